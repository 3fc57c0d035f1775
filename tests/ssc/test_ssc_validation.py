"""Bad input raises ValueError naming the problem."""

import re

import numpy as np
import pytest
import torch

from vllm_videoanchor.ssc import (
    AdmmStats,
    SparseSubspaceClustering,
    admm_ssc,
    kmeans_labels,
    spectral_clustering,
)
from vllm_videoanchor.ssc.cupy_admm import admm_ssc_xp


def good_data(n=10, d=6):
    return np.random.default_rng(0).standard_normal((n, d))


@pytest.mark.parametrize(
    "X, message",
    [
        (good_data(n=1), "at least 2 samples"),
        (good_data(n=0), "at least 2 samples"),
        (np.ones(10), "2-D"),
        (np.ones((2, 3, 4)), "2-D"),
        (torch.ones(10), "2-D"),
        (np.array([[1.0, np.nan], [0.0, 1.0], [1.0, 1.0]]), "NaN or infinite"),
        (np.array([[1.0, np.inf], [0.0, 1.0], [1.0, 1.0]]), "NaN or infinite"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), "NaN or infinite"),
        ([["a", "b"], ["c", "d"]], "numeric"),
        (torch.ones(3, 2, dtype=torch.complex64), "real-valued"),
    ],
)
def test_bad_input(X, message):
    with pytest.raises(ValueError, match=message):
        SparseSubspaceClustering(n_clusters=1).fit(X)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(n_clusters=11), "n_clusters=11 must be <= n_samples=10"),
        (dict(n_clusters=0), "n_clusters"),
        (dict(n_clusters=2.5), "n_clusters"),
        (dict(rho=-1.0), "rho"),
        (dict(rho=0.0), "rho"),
        (dict(rho=float("nan")), "rho"),
        (dict(alpha_e=-5), "alpha_e"),
        (dict(alpha_z=float("inf")), "alpha_z"),
        (dict(eps=-1e-4), "eps"),
        (dict(tol=0.0), "tol"),
        (dict(tol="tight"), "tol"),
        (dict(max_iter=0), "max_iter"),
        (dict(max_iter=True), "max_iter"),
        (dict(pca_rank=-1), "pca_rank"),
        (dict(pca_rank=7), "pca_rank=7 must be <="),
        (dict(random_state=-1), "random_state"),
        (dict(affine="yes"), "affine"),
        (dict(dtype="float16"), "dtype"),
        (dict(solver="magic"), "solver"),
        (dict(backend="jax"), "backend"),
        (dict(eigen_solver="lobpcg"), "eigen_solver"),
        (dict(assign_labels="amg"), "assign_labels"),
    ],
)
def test_bad_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        SparseSubspaceClustering(**{"n_clusters": 2, **params}).fit(good_data())


def test_all_zero_tokens_are_rejected():
    with pytest.raises(ValueError, match="regularisers"):
        SparseSubspaceClustering(n_clusters=1).fit(np.zeros((5, 3)))


def test_cupy_backend_needs_cuda_tensors():
    X = torch.tensor(good_data(), dtype=torch.float32)
    with pytest.raises(ValueError, match="CUDA"):
        SparseSubspaceClustering(n_clusters=2, backend="cupy").fit(X)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(rho=-1.0), "rho must be a finite number > 0 or None, got -1.0"),
        (dict(eps=float("nan")), "eps must be a finite number > 0 or None, got nan"),
        (dict(tol=-1e-3), "tol must be a finite number > 0 or None, got -0.001"),
        (dict(max_iter=True), "max_iter must be an integer > 0, got True"),
        (dict(n_clusters=2.5), "n_clusters must be an integer > 0, got 2.5"),
        (dict(pca_rank=-1), "pca_rank must be an integer >= 0, got -1"),
        (dict(random_state=-1), "random_state must be an integer >= 0, got -1"),
        (dict(affine="yes"), "affine must be a bool, got 'yes'"),
        (dict(dtype="float16"), "dtype must be one of ('float32', 'float64'), got 'float16'"),
        (dict(solver="magic"), "solver must be one of ('auto', 'dense', 'lowrank'), got 'magic'"),
        (dict(backend="jax"), "backend must be one of ('torch', 'cupy'), got 'jax'"),
        (dict(eigen_solver="lobpcg"),
         "eigen_solver must be one of ('auto', 'eigh', 'subspace', 'arpack'), got 'lobpcg'"),
        (dict(assign_labels="amg"), "assign_labels must be one of ('discretize', 'cluster_qr', 'kmeans'), got 'amg'"),
        (dict(pca_rank=7), "pca_rank=7 must be <= min(n_samples, n_features)=6"),
    ],
)
def test_parameter_messages_are_exact(params, message):
    """The table's checks word every message as the estimator always has."""
    with pytest.raises(ValueError) as info:
        SparseSubspaceClustering(**{"n_clusters": 2, **params}).fit(good_data())
    assert str(info.value) == message


def test_every_entry_point_checks_with_the_same_words():
    """admm_ssc, its array-module twin, the spectral step and k-means refuse with the
    estimator's messages (one check each, shared)."""
    Y = torch.tensor(good_data().T)  # 6 x 10
    for solve in (admm_ssc, lambda Y, **kw: admm_ssc_xp(Y.numpy(), xp=np, **kw)):
        with pytest.raises(ValueError, match=re.escape("solver must be one of ('auto', 'dense', 'lowrank')")):
            solve(Y, solver="magic")
        lowrank = "solver='lowrank' needs fewer features than samples (got 10 >= 6)"
        with pytest.raises(ValueError, match=re.escape(lowrank)):
            solve(Y.T.contiguous(), solver="lowrank")  # 10 x 6
    with pytest.raises(ValueError, match=re.escape("eigen_solver must be one of ('auto', 'eigh', 'subspace',")):
        spectral_clustering(torch.zeros(4, 4), 2, eigen_solver="lobpcg")
    with pytest.raises(ValueError, match=re.escape("assign_labels must be one of ('discretize', 'cluster_qr',")):
        spectral_clustering(torch.zeros(4, 4), 2, assign_labels="amg")
    with pytest.raises(ValueError, match=re.escape("n_clusters=11 must be <= n_samples=10")):
        kmeans_labels(torch.tensor(good_data()), 11)


def test_statistics_are_an_admm_stats_record():
    est = SparseSubspaceClustering(n_clusters=2, max_iter=5).fit(good_data())
    assert isinstance(est.stats_, AdmmStats)
    assert (est.n_iter_, est.converged_, est.residual_) == (5, False, est.stats_.residual)
    assert (est.lambda_e_, est.lambda_z_) == (est.stats_.lambda_e, est.stats_.lambda_z)
    assert not hasattr(SparseSubspaceClustering(), "n_iter_")  # unfitted: no statistics


def test_a_solver_backend_that_cannot_run_is_refused_by_name():
    from vllm_videoanchor.ssc.cupy_admm import check_solver_backend, cupy_available

    check_solver_backend("torch")
    with pytest.raises(ValueError, match="backend must be one of"):
        check_solver_backend("jax")
    if not cupy_available():
        with pytest.raises(ValueError, match="solver backend 'cupy' needs CuPy"):
            check_solver_backend("cupy")


@pytest.mark.parametrize("solver", ["dense", "lowrank"])
def test_regularisers_beyond_the_arithmetic_are_refused_before_the_solve(solver):
    """alpha_z = 1e300 is a finite, admissible number, but lambda_z = alpha_z / mu_z does not
    fit in float32: refused up front, naming it (the Woodbury path used to run max_iter
    steps on NaN, seconds of a shared engine's step, then fail inside k-means)."""
    Y = torch.tensor(good_data(n=40, d=20 if solver == "lowrank" else 60).T, dtype=torch.float32)
    message = r"lambda_z=.* exceeds .*float32's range: alpha_z is too large for these tokens"
    with pytest.raises(ValueError, match=message):
        admm_ssc(Y, alpha_z=1e300, solver=solver)
    with pytest.raises(ValueError, match=message):
        admm_ssc_xp(Y.numpy(), xp=np, alpha_z=1e300, solver=solver)
    with pytest.raises(ValueError, match=message):
        SparseSubspaceClustering(n_clusters=2, alpha_z=1e300, solver=solver).fit(Y.T)
    assert admm_ssc(Y.double(), alpha_z=1e300, solver=solver, max_iter=20).n_iter == 20  # float64 holds it
    with pytest.raises(ValueError, match=r"lambda_z=1e\+39 exceeds .*float32's range: lambda_z is too large"):
        admm_ssc(Y, lambda_e=1.0, lambda_z=1e39, solver=solver)  # given, not scaled: it names itself
