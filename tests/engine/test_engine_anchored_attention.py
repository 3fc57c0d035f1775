"""The paged anchored attention equals docs/method.md computed densely by hand."""

import math

import pytest
import torch

from vllm_videoanchor.kernels.anchored_prefill_torch import anchored_paged_attention


def dense_reference(q, k, v, gain_k, gain_v, scale):
    """One request, contiguous K/V [ctx, Hkv, D], queries = the last q_len positions."""
    q_len, n_heads, _ = q.shape
    ctx, n_kv, _ = k.shape
    group = n_heads // n_kv
    out = torch.empty(q_len, n_heads, q.shape[2], dtype=torch.float64)
    for h in range(n_heads):
        kh, vh = k[:, h // group].double(), v[:, h // group].double()
        for i in range(q_len):
            pos = ctx - q_len + i
            logits = torch.stack([
                q[i, h].double() @ kh[j] * scale + math.log(gain_k[j]) for j in range(pos + 1)
            ])
            p = torch.softmax(logits, dim=0)
            out[i, h] = sum(p[j] * gain_v[j] * vh[j] for j in range(pos + 1))
    return out


def paged_batch(contexts, q_lens, n_heads=4, n_kv=2, head_dim=8, block_size=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    n_blocks = sum(-(-c // block_size) for c in contexts) + 3
    key_cache = torch.randn(n_blocks, block_size, n_kv, head_dim, generator=g)
    value_cache = torch.randn(n_blocks, block_size, n_kv, head_dim, generator=g)
    gain_k = 1 + 9.5 * torch.rand(n_blocks * block_size, generator=g)
    gain_v = 1 + 2.5 * torch.rand(n_blocks * block_size, generator=g)
    perm = torch.randperm(n_blocks, generator=g)  # blocks scattered through the cache
    max_blocks = max(-(-c // block_size) for c in contexts)
    block_table = torch.zeros(len(contexts), max_blocks, dtype=torch.int32)
    used = 0
    for r, c in enumerate(contexts):
        nb = -(-c // block_size)
        block_table[r, :nb] = perm[used:used + nb].int()
        used += nb
    query = torch.randn(sum(q_lens), n_heads, head_dim, generator=g)
    query_start_loc = torch.tensor([0] + list(torch.tensor(q_lens).cumsum(0)), dtype=torch.int32)
    return dict(query=query, key_cache=key_cache, value_cache=value_cache,
                block_table=block_table, query_start_loc=query_start_loc,
                seq_lens=torch.tensor(contexts, dtype=torch.int32),
                slot_gain_k=gain_k, slot_gain_v=gain_v)


def request_view(batch, r):
    """Contiguous K, V and per-position gains of request r, read back through its blocks."""
    bs = batch["key_cache"].shape[1]
    ctx = int(batch["seq_lens"][r])
    slots = [int(batch["block_table"][r, p // bs]) * bs + p % bs for p in range(ctx)]
    flat_k = batch["key_cache"].reshape(-1, *batch["key_cache"].shape[2:])
    flat_v = batch["value_cache"].reshape(-1, *batch["value_cache"].shape[2:])
    return flat_k[slots], flat_v[slots], batch["slot_gain_k"][slots], batch["slot_gain_v"][slots]


@pytest.mark.parametrize(
    "contexts, q_lens",
    [
        ([7], [7]),                 # a whole prompt in one step
        ([13, 9, 5], [5, 9, 2]),    # later chunks / prefix hits: queries see earlier blocks
        ([6, 11], [1, 4]),          # a decode-sized query beside a chunk
    ],
)
def test_matches_dense_reference(contexts, q_lens):
    batch = paged_batch(contexts, q_lens)
    scale = 8 ** -0.5
    out = anchored_paged_attention(**batch, scale=scale)
    starts = batch["query_start_loc"].tolist()
    for r in range(len(contexts)):
        k, v, gk, gv = request_view(batch, r)
        ref = dense_reference(batch["query"][starts[r]:starts[r + 1]], k, v, gk, gv, scale)
        assert torch.allclose(out[starts[r]:starts[r + 1]].double(), ref, atol=1e-5)


def test_unit_gains_are_plain_causal_attention():
    batch = paged_batch([10], [10])
    batch["slot_gain_k"].fill_(1.0)
    batch["slot_gain_v"].fill_(1.0)
    out = anchored_paged_attention(**batch, scale=0.3)
    k, v, _, _ = request_view(batch, 0)
    q = batch["query"].transpose(0, 1)  # [H, T, D]
    k = k.repeat_interleave(2, dim=1).transpose(0, 1)
    v = v.repeat_interleave(2, dim=1).transpose(0, 1)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)
    assert torch.allclose(out, ref.transpose(0, 1), atol=1e-5)


def test_bfloat16_inputs_write_into_output():
    batch = paged_batch([9], [3])
    for name in ("query", "key_cache", "value_cache"):
        batch[name] = batch[name].bfloat16()
    output = torch.zeros(3, 4, 8, dtype=torch.bfloat16)
    result = anchored_paged_attention(**batch, scale=0.35, output=output)
    assert result is output and output.abs().sum() > 0
