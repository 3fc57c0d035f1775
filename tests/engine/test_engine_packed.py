"""The packed columns of item embeddings: gains keep their precision in low-precision models,
and every width is owned by one layout (ours, deepstack, EVS), never guessed."""

import pytest
import torch

from vllm_videoanchor.engine.packed import GAIN_COLUMNS, PackedLayout, pack_gains, unpack_gains


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 0.0), (torch.bfloat16, 1e-4), (torch.float16, 1e-6)])
def test_pack_unpack_round_trip(dtype, tol):
    embedding = torch.randn(50, 16).to(dtype)
    score = torch.rand(50)
    gain_k, gain_v = 1 + 9.5 * score, 1 + 2.5 * score
    packed = pack_gains(embedding, gain_k, gain_v)
    assert packed.shape == (50, 16 + GAIN_COLUMNS) and packed.dtype == dtype
    stripped, k, v = unpack_gains(packed)
    assert torch.equal(stripped, embedding)
    assert (k - gain_k).abs().max() <= tol * gain_k.max()
    assert (v - gain_v).abs().max() <= tol * gain_v.max()
    if dtype == torch.bfloat16:  # one bfloat16 column alone would be ~100x worse
        assert (gain_k.to(dtype).float() - gain_k).abs().max() > 100 * (k - gain_k).abs().max()


def test_layout_strips_gains_and_keeps_deepstack_columns():
    layout = PackedLayout(hidden=16, deepstack=32)
    embedding = torch.randn(10, 48)
    assert torch.equal(layout.tokens(embedding), embedding[:, :16])
    gain_k, gain_v = 1 + torch.rand(10), 1 + torch.rand(10)
    stripped, k, v = layout.unpack(layout.pack(embedding, gain_k, gain_v))
    assert torch.equal(stripped, embedding) and torch.equal(k, gain_k) and torch.equal(v, gain_v)
    assert layout.unpack(embedding)[1] is None  # a plain item carries no gains


def test_evs_position_columns_are_never_taken_for_gains():
    """EVS appends 4 position columns, as many as our gain columns: a width test alone would
    read an EVS item's positions as gains (the defect this layout fixes)."""
    layout = PackedLayout(hidden=16, evs=4)
    assert layout.evs == GAIN_COLUMNS
    with_positions = torch.randn(10, 20)
    stripped, gain_k, gain_v = layout.unpack(with_positions)
    assert stripped is with_positions and gain_k is None and gain_v is None
    with pytest.raises(ValueError, match="EVS"):
        layout.pack(with_positions, torch.ones(10), torch.ones(10))


@pytest.mark.parametrize("width", [15, 17, 22])
def test_widths_that_fit_no_layout_are_errors(width):
    with pytest.raises(ValueError, match="does not fit the packed layout"):
        PackedLayout(hidden=16).unpack(torch.randn(4, width))
