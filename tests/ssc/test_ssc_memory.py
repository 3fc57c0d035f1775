"""Sizes whose N x N matrices cannot fit are refused with a clear error before allocating."""

import numpy as np
import pytest
import torch

from vllm_videoanchor.anchor import AnchorParams, compute_anchor_gains
from vllm_videoanchor.ssc import SparseSubspaceClustering, admm_ssc
from vllm_videoanchor.ssc.cupy_admm import admm_ssc_xp
from vllm_videoanchor.ssc.memory import LIVE_DXN, LIVE_NXN, check_fits, solve_bytes

# 300k tokens: 9 float32 matrices of 300k x 300k are ~2.6 TiB, far beyond this machine
TOO_MANY = 300_000


def test_the_count_and_the_message():
    assert solve_bytes(16384, 4) == LIVE_NXN * 2**30
    with pytest.raises(ValueError, match=r"16384 tokens needs about 9.0 GiB .* more than the 4.0 GiB free"):
        check_fits(16384, 4, torch.device("cpu"), available=4 * 2**30)
    check_fits(16384, 4, torch.device("cpu"), available=10 * 2**30)  # fits


def test_features_count_where_tokens_have_more_of_them_than_there_are_tokens():
    """With D = 4N the D x N arrays (Y, the split residual, its multiplier, ...) are 20
    N x N matrices' worth: a size that fits on its N x N matrices alone is refused."""
    assert solve_bytes(16384, 4, n_features=4 * 16384) == (LIVE_NXN + 4 * LIVE_DXN) * 2**30
    check_fits(16384, 4, torch.device("cpu"), available=10 * 2**30, n_features=0)
    with pytest.raises(ValueError, match=r"needs about 29.0 GiB \(9 matrices of 16384 x 16384 and 5 of 65536 x 16384"):
        check_fits(16384, 4, torch.device("cpu"), available=10 * 2**30, n_features=4 * 16384)


def test_an_impossible_solve_is_refused_before_any_allocation():
    """One feature per token keeps the input small (1.2 MB); the Gram matrix alone would be
    360 GB: the refusal has to come first (this test would die of memory otherwise)."""
    tokens = torch.randn(TOO_MANY, 1)
    with pytest.raises(ValueError, match=f"a solve over {TOO_MANY} tokens needs about"):
        admm_ssc(tokens.T)
    with pytest.raises(ValueError, match="fewer frames or pixels"):
        SparseSubspaceClustering(n_clusters=2).fit(tokens)
    with pytest.raises(ValueError, match=f"{TOO_MANY} tokens"):
        compute_anchor_gains(tokens, AnchorParams(n_clusters=2))
    with pytest.raises(ValueError, match=f"{TOO_MANY} tokens"):
        admm_ssc_xp(np.random.default_rng(0).standard_normal((1, TOO_MANY)), xp=np)
