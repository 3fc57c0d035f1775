"""AnchorParams validation and compute_anchor_gains against the dense reference."""

import numpy as np
import pydantic
import pytest
import torch

import reference
from vllm_videoanchor.anchor import AnchorParams, compute_anchor_gains, shared_expression_score


def test_defaults():
    p = AnchorParams()
    assert p.method == "ssc"
    assert (p.alpha_q, p.alpha_k, p.alpha_v) == (4.0, 9.5, 2.5)
    assert (p.n_clusters, p.rho, p.alpha_e, p.alpha_z, p.eps, p.max_iter) == (
        24, 300.0, 800.0, 800.0, 1e-4, 10000)
    assert p.affine is True and p.pca_rank == 0


@pytest.mark.parametrize(
    "field, value",
    [
        ("alpha_k", -1.0),
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

    C_ref, n_iter = reference.admm(X.T)
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
    C_ref, _ = reference.admm(random_tokens.T)
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
    gains = compute_anchor_gains(torch.tensor(X), AnchorParams(n_clusters=4, dtype="float64", score=score))
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
    C_ref, n_iter = (None, 0) if score == "size" else reference.admm(X.T)
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
