"""AnchorParams validation and compute_anchor_gains against the dense reference."""

import dataclasses
import inspect
import re

import numpy as np
import pydantic
import pytest
import reference
import torch

from vllm_videoanchor.anchor import (
    ESTIMATOR_FIELDS,
    AnchorParams,
    compute_anchor_gains,
    shared_expression_score,
)
from vllm_videoanchor.ssc import (
    AdmmStats,
    SparseSubspaceClustering,
    admm_ssc,
    kmeans_labels,
    spectral_clustering,
)
from vllm_videoanchor.ssc.admm import NO_ADMM
from vllm_videoanchor.ssc.cupy_admm import admm_ssc_xp
from vllm_videoanchor.ssc.params import ADMM_KNOBS, DEFAULTS, REQUEST_KNOBS


def test_defaults():
    p = AnchorParams()
    assert p.method == "ssc"
    assert (p.alpha_q, p.alpha_k, p.alpha_v) == (4.0, 9.5, 2.5)
    assert (p.n_clusters, p.rho, p.alpha_e, p.alpha_z, p.eps, p.max_iter) == (
        24, None, 800.0, 800.0, None, 10000)  # rho, eps: the solver mode's
    assert p.solver_mode == "fast"
    assert p.affine is True and p.pca_rank == 0


@pytest.mark.parametrize(
    "field, value",
    [
        ("alpha_k", -1.0),
        ("alpha_k", 1e308),  # float32 gains would be inf x 0 = NaN
        ("alpha_v", 1000.5),
        ("alpha_v", float("nan")),
        ("alpha_q", "big"),
        ("n_clusters", 0),
        ("n_clusters", 2.5),
        ("rho", 0.0),
        ("rho", float("inf")),
        ("alpha_e", -800.0),
        ("eps", 0),
        ("max_iter", 0),
        ("pca_rank", -3),
        ("method", "lowrank-magic"),
        ("solver", "fast"),
        ("dtype", "float16"),
        ("affine", "yes"),
        ("no_such_knob", 1),
    ],
)
def test_bad_params_name_the_field(field, value):
    with pytest.raises(pydantic.ValidationError) as info:
        AnchorParams(**{field: value})
    assert field in str(info.value)
    assert isinstance(info.value, ValueError)


def test_the_largest_gains_stay_finite(random_tokens):
    tokens = torch.tensor(random_tokens, dtype=torch.float32)
    gains = compute_anchor_gains(tokens, AnchorParams(n_clusters=3, alpha_k=1000.0, alpha_v=1000.0))
    for gain in (gains.gain_k, gains.gain_v):
        assert torch.isfinite(gain).all() and gain.min() == 1.0 and 1000.0 < gain.max() <= 1001.0


def test_params_from_json_and_ints_for_floats():
    p = AnchorParams.model_validate_json('{"alpha_k": 3, "n_clusters": 4, "rho": 100}')
    assert p.alpha_k == 3.0 and p.n_clusters == 4 and p.rho == 100.0
    assert AnchorParams.model_validate(p.model_dump()) == p


def test_scores_and_gains_match_reference_on_subspaces():
    """End to end on a clear union of subspaces: same partition, same scores and gains."""
    X, truth = reference.union_of_subspaces(
        n_subspaces=4, dim=3, ambient=32, points=15, noise=0.005, seed=0
    )
    params = AnchorParams(n_clusters=4, dtype="float64", alpha_k=9.5, alpha_v=2.5)
    gains = compute_anchor_gains(torch.tensor(X), params)

    C_ref, n_iter = reference.admm(X.T, **reference.FAST)
    assert gains.n_iter == n_iter and gains.converged
    labels_ref = reference.spectral_labels(C_ref, 4)
    assert reference.misclassification(labels_ref, gains.labels.numpy()) == 0.0
    assert reference.misclassification(truth, labels_ref) == 0.0
    s_ref, gk_ref, gv_ref = reference.gains(C_ref, labels_ref, 9.5, 2.5)
    for ours, ref in [(gains.score, s_ref), (gains.gain_k, gk_ref), (gains.gain_v, gv_ref)]:
        assert np.abs(ours.numpy() - ref).max() <= 1e-5 * np.abs(ref).max()
    assert gains.score.min() == 0.0 and gains.score.max() < 1.0


def test_score_formula_matches_reference_on_random_data(random_tokens):
    """Random data has no true partition: check the score given our own labels."""
    params = AnchorParams(n_clusters=5, dtype="float64")
    gains = compute_anchor_gains(torch.tensor(random_tokens), params)
    C_ref, _ = reference.admm(random_tokens.T, **reference.FAST)
    s_ref = reference.scores(C_ref, gains.labels.numpy())
    assert np.abs(gains.score.numpy() - s_ref).max() < 1e-5
    assert torch.allclose(gains.gain_k, 1 + 9.5 * gains.score)
    assert torch.allclose(gains.gain_v, 1 + 2.5 * gains.score)


def test_score_uses_signed_row_sums_and_cluster_share():
    C = torch.tensor([[0.0, 2.0, -1.0], [0.5, 0.0, 0.5], [0.0, 0.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    # s_hat = [2/3 * 1, 2/3 * 1, 1/3 * 0] -> min-max
    s = shared_expression_score(C.T, labels)
    expected = torch.tensor([2 / 3, 2 / 3, 0.0], dtype=torch.float64) / (2 / 3 + 1e-5)
    assert torch.allclose(s, expected)


def test_alpha_q_has_no_effect(random_tokens):
    tokens = torch.tensor(random_tokens, dtype=torch.float32)
    a = compute_anchor_gains(tokens, AnchorParams(n_clusters=3, alpha_q=0.0))
    b = compute_anchor_gains(tokens, AnchorParams(n_clusters=3, alpha_q=100.0))
    assert torch.equal(a.gain_k, b.gain_k) and torch.equal(a.gain_v, b.gain_v)


def test_gains_shapes_dtype_and_stats(random_tokens):
    tokens = torch.tensor(random_tokens, dtype=torch.bfloat16)  # a model's dtype
    g = compute_anchor_gains(tokens, AnchorParams(n_clusters=3, alpha_k=0.0))
    for t in (g.score, g.gain_k, g.gain_v, g.labels):
        assert t.shape == (40,) and t.device == tokens.device
    assert g.score.dtype == torch.float32
    assert torch.all(g.gain_k == 1.0)  # alpha_k = 0 leaves keys alone
    assert torch.all((g.score >= 0) & (g.score <= 1))
    assert g.seconds > 0 and g.n_iter > 0 and g.lambda_e > 0 and g.lambda_z > 0


@pytest.mark.parametrize(
    "tokens, message",
    [
        (torch.randn(1, 8), "at least 2"),
        (torch.randn(4, 8, 2), "2-D"),
        (torch.full((4, 3), float("nan")), "NaN"),
    ],
)
def test_bad_tokens(tokens, message):
    with pytest.raises(ValueError, match=message):
        compute_anchor_gains(tokens, AnchorParams(n_clusters=1))


def test_too_many_clusters_for_the_tokens():
    with pytest.raises(ValueError, match="n_clusters=24 must be <= n_samples=10"):
        compute_anchor_gains(torch.randn(10, 4))


def test_params_type_is_checked():
    with pytest.raises(TypeError, match="AnchorParams"):
        compute_anchor_gains(torch.randn(10, 4), {"n_clusters": 2})


def _unequal_subspaces():
    """Four subspaces with 15, 12, 9 and 6 points: cluster shares differ."""
    X, truth = reference.union_of_subspaces(n_subspaces=4, dim=3, ambient=32, points=15, noise=0.005, seed=0)
    keep = np.concatenate([np.flatnonzero(truth == k)[:m] for k, m in enumerate((15, 12, 9, 6))])
    return X[keep], truth[keep]


def _assert_close(ours: torch.Tensor, ref: np.ndarray):
    assert np.abs(ours.numpy() - ref).max() <= 1e-5 * max(np.abs(ref).max(), 1.0)


@pytest.mark.parametrize("score", ["size", "self_expression", "both"])
def test_score_variants_match_reference(score):
    """The score ablations with SSC clusters: the dense ADMM and scikit-learn's spectral
    clustering in the test give the same partition and the same scores."""
    X, truth = _unequal_subspaces()
    gains = compute_anchor_gains(torch.tensor(X), AnchorParams(n_clusters=4, dtype="float64", score=score,
                                                               solver_mode="reference"))
    C_ref, _ = reference.admm(X.T)
    labels_ref = reference.spectral_labels(C_ref, 4)
    assert reference.misclassification(truth, labels_ref) == 0.0
    assert reference.misclassification(labels_ref, gains.labels.numpy()) == 0.0
    s_ref, gk_ref, gv_ref = reference.gains(C_ref, labels_ref, 9.5, 2.5, score)
    for ours, ref in [(gains.score, s_ref), (gains.gain_k, gk_ref), (gains.gain_v, gv_ref)]:
        _assert_close(ours, ref)
    assert gains.score.max() > 0.99  # every variant spans [0, 1)


@pytest.mark.parametrize("score", ["size", "self_expression", "both"])
def test_kmeans_ablation_matches_reference(score):
    """method='kmeans': clusters from k-means on the tokens (the test's own Lloyd's), the
    self-expression strength still from the dense ADMM; no ADMM at all for score='size'."""
    X, truth = reference.blobs()
    gains = compute_anchor_gains(torch.tensor(X), AnchorParams(method="kmeans", n_clusters=4, dtype="float64",
                                                               score=score))
    labels_ref = reference.kmeans(X, 4)
    assert reference.misclassification(truth, labels_ref) == 0.0
    assert reference.misclassification(labels_ref, gains.labels.numpy()) == 0.0
    C_ref, n_iter = (None, 0) if score == "size" else reference.admm(X.T, **reference.FAST)
    assert gains.n_iter == n_iter
    s_ref, gk_ref, gv_ref = reference.gains(C_ref, labels_ref, 9.5, 2.5, score)
    for ours, ref in [(gains.score, s_ref), (gains.gain_k, gk_ref), (gains.gain_v, gv_ref)]:
        _assert_close(ours, ref)


def test_kmeans_and_ssc_differ_where_subspaces_are_not_blobs():
    """On a union of subspaces through the origin, k-means (distance) does not find the
    subspaces that SSC finds: the ablation measures something."""
    X, truth = _unequal_subspaces()
    ssc = compute_anchor_gains(torch.tensor(X), AnchorParams(n_clusters=4, dtype="float64"))
    km = compute_anchor_gains(torch.tensor(X), AnchorParams(n_clusters=4, dtype="float64", method="kmeans"))
    assert reference.misclassification(truth, ssc.labels.numpy()) == 0.0
    assert reference.misclassification(truth, km.labels.numpy()) > 0.1


def test_uniform_ablation_gives_every_token_the_full_gain(random_tokens):
    tokens = torch.tensor(random_tokens, dtype=torch.float32)
    gains = compute_anchor_gains(tokens, AnchorParams(method="uniform", alpha_k=3.0, alpha_v=0.5))
    assert torch.equal(gains.score, torch.ones(40))
    assert torch.equal(gains.gain_k, torch.full((40,), 4.0)) and torch.equal(gains.gain_v, torch.full((40,), 1.5))
    assert gains.n_iter == 0 and gains.converged


def test_uniform_ignores_the_cluster_count_but_not_bad_tokens():
    assert compute_anchor_gains(torch.randn(3, 4), AnchorParams(method="uniform")).score.shape == (3,)
    with pytest.raises(ValueError, match="NaN"):
        compute_anchor_gains(torch.full((4, 3), float("nan")), AnchorParams(method="uniform"))


def test_score_variants_need_clusters():
    with pytest.raises(pydantic.ValidationError, match="score") as info:
        AnchorParams(method="uniform", score="size")
    assert info.value.errors()[0]["loc"] == ("score",)


def test_ablations_are_deterministic(random_tokens):
    tokens = torch.tensor(random_tokens, dtype=torch.float32)
    for method in ("ssc", "kmeans"):
        a = compute_anchor_gains(tokens, AnchorParams(method=method, n_clusters=5))
        b = compute_anchor_gains(tokens.clone(), AnchorParams(method=method, n_clusters=5))
        assert torch.equal(a.labels, b.labels) and torch.equal(a.gain_k, b.gain_k)


# --- one declaration of the SSC knobs (ssc/params.py) -------------------------------------

SSC_FIELDS = ("n_clusters", "rho", "alpha_e", "alpha_z", "eps", "max_iter", "affine", "pca_rank",
              "random_state", "assign_labels", "solver", "solver_mode", "dtype")


def _keyword_defaults(function, skip=()):
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty and name not in skip}


def test_field_order_is_the_encodings():
    """engine/option.py encodes requests in this order: the SSC fields follow the method's."""
    assert tuple(AnchorParams.model_fields) == ("method", "score", "alpha_q", "alpha_k", "alpha_v", *SSC_FIELDS)
    assert ESTIMATOR_FIELDS == set(SSC_FIELDS) == {knob.name for knob in REQUEST_KNOBS}


def test_ssc_defaults_agree_everywhere():
    """Each place that states an SSC default, compared with the others (not with the table
    alone): a default changed in one place only fails here."""
    anchor = AnchorParams().model_dump(include=set(SSC_FIELDS))
    estimator = SparseSubspaceClustering().get_params()
    assert anchor == {name: estimator[name] for name in SSC_FIELDS}
    admm_knobs = {name: estimator[name] for name in ADMM_KNOBS}
    assert _keyword_defaults(admm_ssc, skip=("lambda_e", "lambda_z", "time_budget")) == admm_knobs
    assert _keyword_defaults(admm_ssc_xp, skip=("xp", "time_budget")) == admm_knobs
    assert _keyword_defaults(kmeans_labels) == {name: estimator[name] for name in ("random_state", "pca_rank")}
    assert _keyword_defaults(spectral_clustering) == {
        name: estimator[name] for name in ("random_state", "eigen_solver", "assign_labels")}
    assert set(estimator) == set(DEFAULTS) | {"device", "time_budget"}
    assert {name: estimator[name] for name in DEFAULTS} == DEFAULTS
    for name, value in anchor.items():  # the kinds too: option.py decodes by annotation
        assert type(value) is type(estimator[name]) is type(DEFAULTS[name]), name


CANDIDATES = [-1, 0, 1, 2, 0.5, -0.5, 1e-3, float("nan"), float("inf"), True, False, None,
              "auto", "dense", "lowrank", "float64", "float16", "yes"]


@pytest.mark.parametrize("name", SSC_FIELDS)
def test_ssc_bounds_agree_between_params_and_estimator(name):
    """Every candidate value is accepted by both AnchorParams and the estimator or refused by
    both, with an error that names the field: a bound or kind changed in one place fails."""
    X = np.random.default_rng(0).standard_normal((10, 6))
    base = {"n_clusters": 2, "max_iter": 3}
    for value in CANDIDATES:
        try:
            AnchorParams(**{name: value})
            by_params = None
        except pydantic.ValidationError as exc:
            by_params = str(exc)
        try:
            SparseSubspaceClustering(**{**base, name: value}).fit(X)
            by_estimator = None
        except ValueError as exc:
            by_estimator = str(exc)
        assert (by_params is None) == (by_estimator is None), (value, by_params, by_estimator)
        if by_params is not None:
            assert name in by_params and by_estimator.startswith(name), value


@pytest.mark.parametrize("params, n_tokens, n_features, message", [
    ({"n_clusters": 11}, 10, 4, "n_clusters=11 exceeds the 10 visual tokens of an item"),
    ({"n_clusters": 1, "pca_rank": 5}, 10, 4, "pca_rank=5 exceeds min(visual tokens, hidden size) = 4"),
    ({"n_clusters": 1, "pca_rank": 9}, 8, 64, "pca_rank=9 exceeds min(visual tokens, hidden size) = 8"),
    ({"n_clusters": 1}, 1, 4, "an item needs at least 2 visual tokens"),
    ({"n_clusters": 2, "solver": "lowrank"}, 10, 12,
     "solver='lowrank' needs fewer features than visual tokens (got 12 >= 10); use 'auto' or 'dense'"),
    ({"n_clusters": 2, "solver": "lowrank", "pca_rank": 10}, 10, 12,
     "solver='lowrank' needs fewer features than visual tokens (got 10 >= 10); use 'auto' or 'dense'"),
    ({"n_clusters": 2, "solver": "lowrank", "method": "kmeans"}, 10, 10, "solver='lowrank' needs fewer"),
    ({"n_clusters": 10}, 10, 4, None),
    ({"n_clusters": 2, "solver": "lowrank", "pca_rank": 9}, 10, 12, None),
    ({"n_clusters": 2, "solver": "lowrank"}, 10, 9, None),
    ({"n_clusters": 2, "pca_rank": 4}, 10, 4, None),
    ({"n_clusters": 2, "solver": "dense"}, 10, 12, None),
])
def test_check_token_set_matches_what_the_solve_refuses(params, n_tokens, n_features, message):
    """check_token_set refuses an item exactly when compute_anchor_gains would (for methods
    that run the ADMM), with the request's wording."""
    p = AnchorParams(max_iter=3, **params)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randn(n_tokens, n_features, generator=gen, dtype=torch.float64)
    if message is None:
        p.check_token_set(n_tokens, n_features)
        compute_anchor_gains(tokens, p)
    else:
        with pytest.raises(ValueError, match=re.escape(message)):
            p.check_token_set(n_tokens, n_features)
        with pytest.raises(ValueError):
            compute_anchor_gains(tokens, p)


def test_check_token_set_skips_what_the_method_does_not_use():
    """uniform clusters nothing (n_clusters is free); kmeans with score='size' runs no ADMM
    (solver is free); pca_rank is bounded for every method, as the engine requires."""
    AnchorParams(method="uniform").check_token_set(3, 8)
    AnchorParams(method="kmeans", score="size", n_clusters=2, solver="lowrank").check_token_set(10, 64)
    with pytest.raises(ValueError, match=re.escape("pca_rank=9 exceeds")):
        AnchorParams(method="uniform", pca_rank=9).check_token_set(4, 8)
    with pytest.raises(ValueError, match="at least 2 visual tokens"):
        AnchorParams(method="uniform").check_token_set(1, 8)


def test_solver_statistics_are_one_record(random_tokens):
    tokens = torch.tensor(random_tokens, dtype=torch.float32)
    params = AnchorParams(n_clusters=3)
    gains = compute_anchor_gains(tokens, params)
    est = params.estimator().fit(tokens)
    assert isinstance(gains.stats, AdmmStats) and gains.stats == est.stats_
    flat = dataclasses.astuple(est.stats_)
    assert (gains.n_iter, gains.converged, gains.lambda_e, gains.lambda_z, gains.residual,
            gains.solver_mode, gains.distance, gains.stopped_by) == flat
    assert (est.n_iter_, est.converged_, est.lambda_e_, est.lambda_z_, est.residual_, est.solver_mode_,
            est.distance_, est.stopped_by_) == flat
    result = admm_ssc(tokens.T.contiguous())
    assert result.stats == est.stats_ and result.n_iter == est.n_iter_
    uniform = compute_anchor_gains(tokens, AnchorParams(method="uniform"))
    assert uniform.stats == NO_ADMM and uniform.n_iter == 0 and uniform.converged


def test_eps_below_the_solves_resolution_is_refused_naming_why():
    """A residual test that can never pass only makes the solve run to its limits."""
    with pytest.raises(ValueError, match=r"eps=1e-30 is below the float32 solve's resolution \(1.19e-07\)"):
        AnchorParams(eps=1e-30)
    assert AnchorParams(eps=2e-7).eps == 2e-7
    assert AnchorParams(eps=1e-12, dtype="float64").eps == 1e-12
    with pytest.raises(ValueError, match="below the float64 solve's resolution"):
        AnchorParams(eps=1e-17, dtype="float64")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["alpha_e", "alpha_z"])
def test_weights_that_would_underflow_are_refused_by_name(name, dtype):
    """5e-324 passed "> 0" and made lambda_e = 0: the solve then failed inside the engine."""
    floor = torch.finfo(getattr(torch, dtype)).tiny
    with pytest.raises(ValueError, match=f"{name}=.* below the {dtype} solve's smallest normal number"):
        AnchorParams(**{name: 5e-324, "dtype": dtype})
    with pytest.raises(ValueError, match=name):
        AnchorParams(**{name: floor / 2, "dtype": dtype})
    assert getattr(AnchorParams(**{name: floor, "dtype": dtype}), name) == floor
