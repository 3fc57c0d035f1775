"""Gains carried as embedding columns keep their precision in low-precision models."""

import pytest
import torch

from vllm_videoanchor.engine.gains import GAIN_COLUMNS, pack_gains, unpack_gains


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
