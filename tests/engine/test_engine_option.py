"""The `anchor` request option: parsing, errors that name the field, and its tensor form."""

import pytest
import torch

import vllm_videoanchor
from vllm_videoanchor import anchor
from vllm_videoanchor.anchor import AnchorParams
from vllm_videoanchor.engine.option import (
    VECTOR_SIZE,
    ItemOption,
    content_digest,
    hashed_option,
    parse_anchor_option,
    split_anchor_option,
)


@pytest.mark.parametrize("value", [None, False])
def test_off(value):
    assert parse_anchor_option(value) is None
    off = ItemOption(None).to_tensor()
    assert off.sum() == 0 and ItemOption.from_tensor(off).params is None


def test_true_means_defaults_and_objects_are_fields():
    assert parse_anchor_option(True) == AnchorParams()
    assert parse_anchor_option({"alpha_k": 3, "n_clusters": 2}) == AnchorParams(alpha_k=3.0, n_clusters=2)


@pytest.mark.parametrize(
    "value, field",
    [({"alpha_k": -1}, "alpha_k"), ({"n_clusters": 0}, "n_clusters"), ({"bogus": 1}, "bogus"),
     ({"solver": "magic"}, "solver"), ("yes", "anchor"), (3, "anchor")],
)
def test_bad_values_name_the_field(value, field):
    with pytest.raises(ValueError, match=field):
        parse_anchor_option(value)


def test_model_defaults_sit_under_the_request_fields(monkeypatch):
    """True is the architecture's row of MODEL_DEFAULTS; given fields go on top; other
    architectures get AnchorParams' own defaults."""
    row = anchor.ModelDefaults("test", overrides={"alpha_k": 2.0, "n_clusters": 8})
    monkeypatch.setitem(anchor.MODEL_DEFAULTS, "TestArch", row)
    assert parse_anchor_option(True, "TestArch") == AnchorParams(alpha_k=2.0, n_clusters=8)
    assert parse_anchor_option({"n_clusters": 3}, "TestArch") == AnchorParams(alpha_k=2.0, n_clusters=3)
    assert parse_anchor_option(True, "OtherArch") == AnchorParams()
    with pytest.raises(ValueError, match="alpha_k"):
        parse_anchor_option({"alpha_k": -2}, "TestArch")


def test_the_deployments_assignment_sits_between_the_model_row_and_the_request(monkeypatch):
    """--anchor-assign-labels (AnchorSettings.assign_labels) is the default of requests that
    do not name one; a request's own field wins; unset, AnchorParams' default."""
    from vllm_videoanchor.settings import AnchorSettings

    deployment = AnchorSettings(assign_labels="cluster_qr").request_defaults()
    assert AnchorSettings().request_defaults() == {}
    assert parse_anchor_option(True, None, deployment).assign_labels == "cluster_qr"
    assert parse_anchor_option({"n_clusters": 3}, None, deployment) == AnchorParams(
        n_clusters=3, assign_labels="cluster_qr")
    assert parse_anchor_option({"assign_labels": "kmeans"}, None, deployment).assign_labels == "kmeans"
    assert parse_anchor_option(True, None, {}).assign_labels == "discretize"
    params, _ = split_anchor_option({"anchor": True}, None, deployment)
    assert ItemOption.from_tensor(ItemOption(params).to_tensor()).params.assign_labels == "cluster_qr"


def test_every_anchored_architecture_has_a_defaults_row():
    assert set(vllm_videoanchor.ANCHORED_MODELS) <= set(anchor.MODEL_DEFAULTS)
    published = {name for name, row in anchor.MODEL_DEFAULTS.items() if row.frames is not None}
    assert published == {"InternVLChatModel", "InternVLForConditionalGeneration"}
    assert all("unvalidated" in anchor.MODEL_DEFAULTS[name].source
               for name in set(anchor.MODEL_DEFAULTS) - published)


def test_split_removes_the_option():
    params, rest = split_anchor_option({"anchor": True, "fps": 2})
    assert params == AnchorParams() and rest == {"fps": 2}


@pytest.mark.parametrize(
    "params",
    [AnchorParams(), AnchorParams(alpha_k=0.5, n_clusters=3, affine=False, solver="dense",
                                  dtype="float64", pca_rank=16, max_iter=77, eps=1e-6),
     AnchorParams(method="kmeans", score="self_expression"), AnchorParams(method="uniform"),
     AnchorParams(solver_mode="reference", rho=120.0)],
)
def test_round_trip(params):
    vector = ItemOption(params, digest=2**48 - 1).to_tensor()
    assert vector.shape == (VECTOR_SIZE,) and vector.dtype == torch.float64
    assert ItemOption.from_tensor(vector).params == params
    assert ItemOption.from_tensor(vector).digest == 2**48 - 1  # exact in float64
    assert ItemOption.from_tensor(ItemOption(params, 3, 2, 7).to_tensor()) == ItemOption(params, 3, 2, 7)


def test_content_digest_depends_on_every_byte():
    pixels = torch.arange(12, dtype=torch.float32)
    grid = torch.tensor([1, 2, 6])
    changed = pixels.clone()
    changed[5] += 1e-3
    assert content_digest(pixels, grid) == content_digest(pixels.clone(), grid.clone())
    assert content_digest(pixels, grid) != content_digest(changed, grid)
    assert content_digest(pixels, grid) != content_digest(pixels, torch.tensor([1, 6, 2]))
    assert 0 <= content_digest(pixels) < 2**48


def test_the_solver_mode_is_part_of_the_hashed_option():
    """Gains from different iterations differ: the two modes never share caches."""
    fast, reference = AnchorParams(), AnchorParams(solver_mode="reference")
    assert hashed_option(fast)["solver_mode"] == "fast"
    assert hashed_option(fast) != hashed_option(reference)


def test_a_token_set_error_names_the_field_as_data():
    """Callers read which parameter to change from the error, not from its wording."""
    with pytest.raises(anchor.TokenSetError) as raised:
        AnchorParams(n_clusters=50).check_token_set(20, 64)
    assert raised.value.field == "n_clusters" and "n_clusters=50" in str(raised.value)
    with pytest.raises(anchor.TokenSetError) as raised:
        AnchorParams(n_clusters=1).check_token_set(1, 64)  # too few tokens: no parameter helps
    assert raised.value.field is None
