"""The ADMM solver computes exactly docs/method.md: its reference mode compared with the
dense reference step for step, and so is its fast mode (its stopping rule against the
program's optimum: tests/ssc/test_ssc_stopping.py)."""

import itertools

import numpy as np
import pytest
import reference
import torch

from vllm_videoanchor.ssc import SparseSubspaceClustering, admm_ssc, pca_project
from vllm_videoanchor.ssc.cupy_admm import admm_ssc_xp
from vllm_videoanchor.ssc.params import SOLVER_MODE
from vllm_videoanchor.testing.ssc_data import token_family

RTOL = 1e-5


def relative_error(ours, ref):
    return np.abs(np.asarray(ours) - ref).max() / np.abs(ref).max()


def data(request, name):
    value = request.getfixturevalue(name)
    return value[0] if isinstance(value, tuple) else value


@pytest.mark.parametrize("dataset", ["random_tokens", "union_tokens"])
@pytest.mark.parametrize("affine", [True, False])
def test_coef_matches_dense_reference(request, dataset, affine):
    X = data(request, dataset)
    C_ref, n_iter_ref = reference.admm(X.T, affine=affine)
    est = SparseSubspaceClustering(n_clusters=2, affine=affine, dtype="float64", solver_mode="reference").fit(X)
    assert est.solver_mode_ == "reference"
    # coef_ is C^T: X ~ coef_ @ X
    assert relative_error(est.coef_, C_ref.T) < RTOL
    assert est.n_iter_ == n_iter_ref
    assert est.converged_
    assert np.all(np.diag(est.coef_) == 0)
    lambda_e, lambda_z = reference.regularizers(X.T)
    assert est.lambda_e_ == pytest.approx(lambda_e, rel=1e-12)
    assert est.lambda_z_ == pytest.approx(lambda_z, rel=1e-12)


@pytest.mark.parametrize("affine", [True, False])
def test_dense_and_lowrank_paths_agree(union_tokens, affine):
    """Woodbury (rank < N) and the explicit inverse solve the same program."""
    Y = torch.tensor(union_tokens[0].T)
    dense = admm_ssc(Y, solver="dense", affine=affine, solver_mode="reference")
    lowrank = admm_ssc(Y, solver="lowrank", affine=affine, solver_mode="reference")
    assert dense.n_iter == lowrank.n_iter
    assert relative_error(lowrank.C, dense.C.numpy()) < RTOL


def test_lowrank_path_needs_fewer_features_than_samples(random_tokens):
    with pytest.raises(ValueError, match="lowrank"):
        admm_ssc(torch.tensor(random_tokens.T), solver="lowrank")


def test_pca_matches_reference(random_tokens):
    X = random_tokens
    C_ref, _ = reference.admm(reference.pca(X.T, 8))
    est = SparseSubspaceClustering(n_clusters=2, pca_rank=8, dtype="float64", solver_mode="reference").fit(X)
    assert relative_error(est.coef_, C_ref.T) < RTOL


def test_pca_projection_is_mean_centred():
    Y = torch.randn(20, 30, dtype=torch.float64) + 5.0
    projected = pca_project(Y, 4)
    assert projected.shape == (4, 30)
    assert torch.allclose(projected.mean(dim=1), torch.zeros(4, dtype=torch.float64), atol=1e-10)


def test_float32_converges_like_float64(union_tokens):
    """The default float32 arithmetic reaches the same tolerances, on both paths and modes."""
    X = union_tokens[0]
    for solver, mode in itertools.product(("dense", "lowrank"), ("fast", "reference")):
        f32 = SparseSubspaceClustering(n_clusters=4, solver=solver, solver_mode=mode).fit(X)
        f64 = SparseSubspaceClustering(n_clusters=4, solver=solver, dtype="float64", solver_mode=mode).fit(X)
        assert f32.converged_
        # the fast mode's stop is a ratio of changes of C: float32 moves it by a few checks
        assert abs(f32.n_iter_ - f64.n_iter_) <= max((0.15 if mode == "fast" else 0.05) * f64.n_iter_, 10)
        if mode == "reference":  # both stop within eps of the optimum, a few iterations apart
            assert np.abs(f32.coef_ - f64.coef_).max() < 5e-3 * np.abs(f64.coef_).max()
        else:  # both stop within tol (relative, Frobenius) of the optimum
            gap = np.linalg.norm(f32.coef_ - f64.coef_) / np.linalg.norm(f64.coef_)
            fast = SOLVER_MODE["fast"]  # stopped on the estimate or on the residual (iteration.stops)
            assert gap < 2 * fast.tol and (f32.distance_ < fast.tol or f32.residual_ < fast.tol * fast.residual_share)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("solver", ["dense", "lowrank"])
def test_array_module_backend_matches_reference(union_tokens, affine, solver):
    """The CuPy backend's code, run with NumPy as its array module, matches the reference."""
    Y = union_tokens[0].T
    C_ref, n_iter_ref = reference.admm(Y, affine=affine)
    result = admm_ssc_xp(Y, xp=np, affine=affine, solver=solver, solver_mode="reference")
    assert result.n_iter == n_iter_ref
    assert relative_error(result.C, C_ref) < RTOL


def test_max_iter_stops_early(random_tokens):
    est = SparseSubspaceClustering(n_clusters=2, max_iter=3, solver_mode="reference").fit(random_tokens)
    assert est.n_iter_ == 3
    assert not est.converged_
    C_ref, _ = reference.admm(random_tokens.T, max_iter=3)
    assert relative_error(est.coef_, C_ref.T) < 1e-4  # float32


def test_torch_input_gives_torch_attributes(random_tokens):
    X = torch.tensor(random_tokens, dtype=torch.float32)
    est = SparseSubspaceClustering(n_clusters=3).fit(X)
    assert isinstance(est.coef_, torch.Tensor) and est.coef_.shape == (40, 40)
    assert isinstance(est.labels_, torch.Tensor) and est.labels_.dtype == torch.int64
    numpy_est = SparseSubspaceClustering(n_clusters=3).fit(random_tokens)
    assert isinstance(numpy_est.coef_, np.ndarray)
    assert np.array_equal(est.labels_.numpy(), numpy_est.labels_)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("solver", ["dense", "lowrank"])
def test_fast_mode_matches_dense_reference(union_tokens, affine, solver):
    """The fast mode is the test's own over-relaxed iteration (reference.FAST, from the
    formulas), step for step, in torch and through the CuPy code run with NumPy, up to the
    step where its own rule stopped it (the rule: tests/ssc/test_ssc_stopping.py)."""
    Y = union_tokens[0].T
    for result in (admm_ssc(torch.tensor(Y), affine=affine, solver=solver),
                   admm_ssc_xp(Y, xp=np, affine=affine, solver=solver)):
        assert result.stats.solver_mode == "fast" and result.converged
        assert result.n_iter % 10 == 0  # checked every 10 steps
        C_ref, n_iter_ref = reference.admm(Y, affine=affine, **{**reference.FAST, "eps": 0.0},
                                           max_iter=result.n_iter)
        assert n_iter_ref == result.n_iter
        assert relative_error(result.C, C_ref) < RTOL


def test_token_families_refuse_too_few_features():
    with pytest.raises(ValueError, match="d must be >= 64, got 32"):
        token_family("subspaces", 64, 32)
    assert token_family("noise", 64, 32).shape == (32, 64)  # no subspaces to embed


def test_solver_mode_defaults_and_overrides():
    """rho and eps None: the mode's values; given, they are used (and the mode's step rules kept)."""
    Y = torch.tensor(reference.union_of_subspaces(n_subspaces=3, points=20, ambient=16)[0].T)
    assert admm_ssc(Y, solver_mode="reference").n_iter == admm_ssc(Y, solver_mode="reference", rho=300.0,
                                                                      eps=1e-4).n_iter
    loose, tight = admm_ssc(Y, tol=1e-1), admm_ssc(Y, tol=1e-3)
    assert loose.n_iter < tight.n_iter and loose.n_iter % 10 == 0
    assert tight.distance < 1e-3 or tight.residual < 1e-3 * SOLVER_MODE["fast"].residual_share
    # eps given to the fast mode is tested beside its tol: both must hold
    assert admm_ssc(Y, tol=1e-1, eps=1e-6).residual < 1e-6
    with pytest.raises(ValueError, match="solver_mode must be one of"):
        admm_ssc(Y, solver_mode="fastest")


def test_each_solve_says_what_stopped_it():
    """The fast mode stops on its distance estimate or its residual test, the reference on
    its residual, max_iter when neither held; converged means a stopping test held."""
    Y = torch.tensor(np.random.default_rng(0).standard_normal((24, 40)), dtype=torch.float64)
    fast = admm_ssc(Y)
    assert fast.converged and fast.stopped_by in ("distance", "residual")
    assert admm_ssc(Y, tol=1e-1, eps=None).stopped_by in ("distance", "residual")
    reference = admm_ssc(Y, solver_mode="reference")
    assert reference.converged and reference.stopped_by == "residual"
    capped = admm_ssc(Y, solver_mode="reference", eps=1e-12, max_iter=5)
    assert (capped.n_iter, capped.converged, capped.stopped_by) == (5, False, "max_iter")


def test_a_time_budget_stops_the_iteration_with_the_iterate_it_reached():
    """A solve that would run to max_iter stops soon after its budget, with the iterate of
    the step it ended on: the same C as the same number of steps without a budget."""
    import time

    Y = torch.tensor(np.random.default_rng(1).standard_normal((64, 200)), dtype=torch.float64)
    start = time.perf_counter()
    cut = admm_ssc(Y, solver_mode="reference", eps=1e-14, max_iter=10**6, time_budget=0.3)
    elapsed = time.perf_counter() - start
    assert (cut.converged, cut.stopped_by) == (False, "budget")
    assert 0 < cut.n_iter < 10**6 and elapsed < 0.3 + 2.0  # setup and one step past the deadline
    same_steps = admm_ssc(Y, solver_mode="reference", eps=1e-14, max_iter=cut.n_iter)
    assert torch.equal(cut.C, same_steps.C)
    assert admm_ssc(Y, time_budget=60.0).stopped_by in ("distance", "residual")  # ample: not cut
    for bad in (0, -1.0, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="time_budget must be a number of seconds > 0 or None"):
            admm_ssc(Y, time_budget=bad)
