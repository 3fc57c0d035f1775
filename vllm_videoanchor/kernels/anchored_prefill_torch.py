"""The anchored prefill attention of docs/method.md, as a pure torch function over a
paged KV cache, so that it is testable on CPU for every cache layout.

For every request in the step, its queries attend to all keys of its context, which live
in the paged cache (earlier chunks and prefix-cache hits included), with
    scores_ij = q_i . k_j * scale + causal mask + log g_K[j]
    out_i     = sum_j softmax(scores)_ij * g_V[j] * v_j,
where the gains are read per cache slot from a side cache indexed like the KV cache
(slot = block_id * block_size + offset), so they live exactly as long as the KV blocks.
"""

from __future__ import annotations

import torch


def gather_context(cache: torch.Tensor, block_row: torch.Tensor, context_len: int) -> torch.Tensor:
    """Rows 0..context_len-1 of one request from a [num_blocks, block_size, heads, dim] cache."""
    block_size = cache.shape[1]
    n_blocks = (context_len + block_size - 1) // block_size
    blocks = cache[block_row[:n_blocks].long()]  # [n_blocks, block_size, heads, dim]
    return blocks.reshape(-1, *cache.shape[2:])[:context_len]


def context_slots(block_row: torch.Tensor, context_len: int, block_size: int) -> torch.Tensor:
    """Cache slot of every context position of one request."""
    positions = torch.arange(context_len, device=block_row.device)
    return block_row[positions // block_size].long() * block_size + positions % block_size


def anchored_paged_attention(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_table: torch.Tensor,
    query_start_loc: torch.Tensor,
    seq_lens: torch.Tensor,
    slot_gain_k: torch.Tensor,
    slot_gain_v: torch.Tensor,
    scale: float,
    output: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal attention with per-key gains for a batch of prefill chunks.

    query: [T, Hq, D] for the scheduled tokens of all requests, in batch order;
    key_cache / value_cache: [num_blocks, block_size, Hkv, D] (Hq a multiple of Hkv);
    block_table: [R, max_blocks]; query_start_loc: [R + 1]; seq_lens: [R] context length
    including this step's tokens; slot_gain_k / slot_gain_v: [num_blocks * block_size].
    Computed in float32 whatever the input dtype; written into `output` ([T, Hq, D]).
    """
    n_tokens, n_heads, head_dim = query.shape
    n_kv_heads = key_cache.shape[2]
    group = n_heads // n_kv_heads
    block_size = key_cache.shape[1]
    if output is None:
        output = torch.empty_like(query)
    starts = query_start_loc.tolist()
    lengths = seq_lens.tolist()
    for r, context_len in enumerate(lengths):
        q_start, q_end = starts[r], starts[r + 1]
        q_len = q_end - q_start
        if q_len == 0:
            continue
        row = block_table[r]
        k = gather_context(key_cache, row, context_len).float()
        v = gather_context(value_cache, row, context_len).float()
        slots = context_slots(row, context_len, block_size)
        log_gain_k = slot_gain_k[slots].float().log()
        gain_v = slot_gain_v[slots].float()
        q = query[q_start:q_end].float()
        # [Hkv, group, q_len, D] x [Hkv, D, ctx] -> [Hkv, group, q_len, ctx]
        q = q.view(q_len, n_kv_heads, group, head_dim).permute(1, 2, 0, 3)
        scores = torch.matmul(q, k.permute(1, 2, 0).unsqueeze(1)) * scale
        scores = scores + log_gain_k
        q_pos = torch.arange(context_len - q_len, context_len, device=query.device)
        k_pos = torch.arange(context_len, device=query.device)
        scores = scores.masked_fill(k_pos[None, :] > q_pos[:, None], float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        weighted_v = (v * gain_v[:, None, None]).permute(1, 0, 2).unsqueeze(1)  # [Hkv,1,ctx,D]
        out = torch.matmul(probs, weighted_v)  # [Hkv, group, q_len, D]
        output[q_start:q_end] = out.permute(2, 0, 1, 3).reshape(q_len, n_heads, head_dim).to(
            output.dtype
        )
    return output
