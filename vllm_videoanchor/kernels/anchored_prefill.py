"""Anchored paged prefill attention in Triton (docs/method.md).

Computes exactly what `vllm_videoanchor.kernels.anchored_prefill_torch.anchored_paged_attention`
computes, for the requests listed in `requests` only:

    logits_ij = q_i . k_j * scale + log g_K[slot(j)]      (causal: j <= position of i)
    out_i     = sum_j softmax(logits)_ij * g_V[slot(j)] * v_j

(the softmax denominator without g_V), reading K/V straight out of a paged KV cache
through its four strides, so any layout works: vLLM CUDA's `[blocks, block_size, heads,
D]` views of an NHD or HND cache, and CPU_ATTN's dim-major K pages
(`engine.attention.cpu_kv_layout.kv_views`).

Design (flash-attention style, one launch per call, no device-to-host sync):
- grid = (cdiv(max_query_len, BLOCK_Q), len(requests), num_kv_heads). A program takes
  BLOCK_Q consecutive query tokens of one request and ALL the query heads that share one
  KV head (GQA: the group, padded to a power of two, is folded into the rows), so every
  K/V tile is loaded once per group: BLOCK_M = BLOCK_Q * GROUP_PAD rows.
- Keys are walked in BLOCK_N tiles from position 0 up to the row block's last position
  only; each key's page comes from the block table (slot = block_id * block_size +
  offset), so tiles may span pages and any block size works. Tiles fully below the
  diagonal skip the causal mask.
- Online softmax in base 2, fp32 accumulation; per key tile two extra loads: log2 g_K is
  added to the logits, g_V multiplies the probabilities before P @ V (not the
  denominator).
- fp32 inputs use IEEE dots (no TF32). Under the Triton interpreter (TRITON_INTERPRET=1),
  bf16 dots are done in fp32: the interpreter's bf16 `tl.dot` is wrong.
- One compiled variant per (dtype, head size, GQA group, unit strides) and row-block size;
  there are two row-block sizes per shape (steps whose chunks are all of at most
  16 / GROUP_PAD tokens, e.g. one-token extensions, and the rest): warm both up before
  a CUDA graph captures the launch (Triton compiles on first use).
- TRITON_INTERPRET must be set before triton is first imported in the process (triton
  decorates its own library then too); a kernel decorated in the other mode than triton's
  library makes the launcher raise a RuntimeError saying so.
- The launcher's argument checks, tile sizes and dot precision are host code, in
  anchored_prefill_launch.py.
"""

from __future__ import annotations

import torch

# absolute: the kernel tests load this file from its path, outside the package
from vllm_videoanchor.kernels.anchored_prefill_launch import LOG2E, check_arguments, dot_modes, tiles

try:  # import triton directly: vllm.triton_utils reports HAS_TRITON=False on CPU builds
    import triton
    import triton.language as tl
except ImportError:  # e.g. aarch64 without a Triton wheel
    triton = None
    tl = None

__all__ = ["anchored_prefill_attention", "kernel_interpreted", "triton_available"]


def triton_available() -> bool:
    return triton is not None


def _is_interpreted(fn) -> bool:
    return type(fn).__name__ == "InterpretedFunction"


def kernel_interpreted() -> bool:
    """Whether this module's kernel runs under the Triton interpreter (TRITON_INTERPRET=1
    was set when triton and this module were imported)."""
    return triton is not None and _is_interpreted(_anchored_prefill_kernel)


if triton is not None:

    @triton.jit
    def _attend_tile(
        acc, l_i, m_i, q, start, r, kvh, kv_end, pos,
        k_ptr, v_ptr, bt_ptr, gk_ptr, gv_ptr,
        stride_kb, stride_ks, stride_kh, stride_kd,
        stride_vb, stride_vs, stride_vh, stride_vd,
        stride_btr, stride_btc,
        block_size, qk_scale,
        offs_d, d_ok,
        BLOCK_N: tl.constexpr, MASK: tl.constexpr,
        DOT_FP32: tl.constexpr, DOT_PRECISION: tl.constexpr,
    ):
        offs_n = start + tl.arange(0, BLOCK_N)
        n_ok = offs_n < kv_end
        page = offs_n // block_size
        off = (offs_n % block_size).to(tl.int64)
        blk = tl.load(bt_ptr + r.to(tl.int64) * stride_btr + page * stride_btc,
                      mask=n_ok, other=0).to(tl.int64)
        slot = blk * block_size + off
        gk = tl.load(gk_ptr + slot, mask=n_ok, other=1.0).to(tl.float32)
        gv = tl.load(gv_ptr + slot, mask=n_ok, other=0.0).to(tl.float32)

        # K tile as [BLOCK_D, BLOCK_N]
        k_offs = (blk[None, :] * stride_kb + off[None, :] * stride_ks + kvh * stride_kh
                  + offs_d[:, None] * stride_kd)
        k = tl.load(k_ptr + k_offs, mask=d_ok[:, None] & n_ok[None, :], other=0.0)
        if DOT_FP32:
            k = k.to(tl.float32)
        qk = tl.dot(q, k, input_precision=DOT_PRECISION)
        s = qk * qk_scale + tl.log2(gk)[None, :]
        if MASK:
            s = tl.where((offs_n[None, :] <= pos[:, None]) & n_ok[None, :], s, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_sub = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing seen yet
        alpha = tl.exp2(m_i - m_sub)
        p = tl.exp2(s - m_sub[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)

        v_offs = (blk[:, None] * stride_vb + off[:, None] * stride_vs + kvh * stride_vh
                  + offs_d[None, :] * stride_vd)
        v = tl.load(v_ptr + v_offs, mask=n_ok[:, None] & d_ok[None, :], other=0.0)
        pv = p * gv[None, :]
        if DOT_FP32:
            v = v.to(tl.float32)
        else:
            pv = pv.to(v.dtype)
        acc = acc * alpha[:, None] + tl.dot(pv, v, input_precision=DOT_PRECISION)
        return acc, l_i, m_new

    @triton.jit
    def _anchored_prefill_kernel(
        q_ptr, k_ptr, v_ptr, o_ptr,
        bt_ptr, qsl_ptr, seq_lens_ptr, gk_ptr, gv_ptr, req_ptr, enabled_ptr,
        qk_scale,
        stride_qt, stride_qh, stride_qd,
        stride_kb, stride_ks, stride_kh, stride_kd,
        stride_vb, stride_vs, stride_vh, stride_vd,
        stride_ot, stride_oh, stride_od,
        stride_btr, stride_btc,
        block_size,
        HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
        GROUP: tl.constexpr, GROUP_PAD: tl.constexpr,
        BLOCK_Q: tl.constexpr, BLOCK_N: tl.constexpr,
        DOT_FP32: tl.constexpr, DOT_PRECISION: tl.constexpr, HAS_ENABLED: tl.constexpr,
    ):
        BLOCK_M: tl.constexpr = BLOCK_Q * GROUP_PAD
        pid_q = tl.program_id(0)
        if HAS_ENABLED:  # a request decided on the device not to need the anchored path
            if tl.load(enabled_ptr + tl.program_id(1)) == 0:
                return
        r = tl.load(req_ptr + tl.program_id(1))
        kvh = tl.program_id(2).to(tl.int64)

        q_start = tl.load(qsl_ptr + r)
        q_len = tl.load(qsl_ptr + r + 1) - q_start
        q_first = pid_q * BLOCK_Q  # first query (within the chunk) of this row block
        if q_first >= q_len:
            return
        ctx_start = tl.load(seq_lens_ptr + r) - q_len  # position of the chunk's query 0

        offs_m = tl.arange(0, BLOCK_M)
        q_idx = q_first + offs_m // GROUP_PAD
        hg = offs_m % GROUP_PAD
        q_head = kvh * GROUP + hg
        row_ok = (q_idx < q_len) & (hg < GROUP)
        pos = ctx_start + q_idx
        offs_d = tl.arange(0, BLOCK_D)
        d_ok = offs_d < HEAD_DIM

        q_rows = (q_start + q_idx).to(tl.int64)
        q_offs = q_rows[:, None] * stride_qt + q_head[:, None] * stride_qh + offs_d[None, :] * stride_qd
        q = tl.load(q_ptr + q_offs, mask=row_ok[:, None] & d_ok[None, :], other=0.0)
        if DOT_FP32:
            q = q.to(tl.float32)

        acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)

        # keys 0 .. kv_end-1: up to the row block's last position
        kv_end = ctx_start + tl.minimum(q_first + BLOCK_Q, q_len)
        # tiles entirely at or below the block's first position need no causal mask
        full_end = ((ctx_start + q_first + 1) // BLOCK_N) * BLOCK_N
        for start in range(0, full_end, BLOCK_N):
            acc, l_i, m_i = _attend_tile(
                acc, l_i, m_i, q, start, r, kvh, kv_end, pos,
                k_ptr, v_ptr, bt_ptr, gk_ptr, gv_ptr,
                stride_kb, stride_ks, stride_kh, stride_kd,
                stride_vb, stride_vs, stride_vh, stride_vd,
                stride_btr, stride_btc, block_size, qk_scale, offs_d, d_ok,
                BLOCK_N, False, DOT_FP32, DOT_PRECISION)
        for start in range(full_end, kv_end, BLOCK_N):
            acc, l_i, m_i = _attend_tile(
                acc, l_i, m_i, q, start, r, kvh, kv_end, pos,
                k_ptr, v_ptr, bt_ptr, gk_ptr, gv_ptr,
                stride_kb, stride_ks, stride_kh, stride_kd,
                stride_vb, stride_vs, stride_vh, stride_vd,
                stride_btr, stride_btc, block_size, qk_scale, offs_d, d_ok,
                BLOCK_N, True, DOT_FP32, DOT_PRECISION)

        l_safe = tl.where(l_i == 0.0, 1.0, l_i)
        out = acc / l_safe[:, None]
        o_offs = q_rows[:, None] * stride_ot + q_head[:, None] * stride_oh + offs_d[None, :] * stride_od
        tl.store(o_ptr + o_offs, out.to(o_ptr.dtype.element_ty),
                 mask=row_ok[:, None] & d_ok[None, :])


def anchored_prefill_attention(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_table: torch.Tensor,
    query_start_loc: torch.Tensor,
    seq_lens: torch.Tensor,
    slot_gain_k: torch.Tensor,
    slot_gain_v: torch.Tensor,
    scale: float,
    output: torch.Tensor,
    requests: torch.Tensor,
    max_query_len: int,
    enabled: torch.Tensor | None = None,
) -> torch.Tensor:
    """Anchored causal attention for the prefill chunks of the requests in `requests`.

    query: [T, Hq, D] (the step's scheduled tokens of all requests, batch order);
    key_cache / value_cache: [num_blocks, block_size, Hkv, D], any strides;
    block_table: [R, max_blocks] int; query_start_loc: [R + 1] int; seq_lens: [R] int,
    context length including this step's tokens (the chunk's queries are the last q_len
    positions); slot_gain_k / slot_gain_v: [num_blocks * block_size] float32 per-slot
    gains; requests: 1-D int tensor of the request indices to compute (the other rows
    of `output` are left untouched); max_query_len: a host int bounding every selected
    request's chunk length (sizes the grid); enabled: optional, one int per entry of
    `requests`, 0 to leave that request's rows untouched too (a choice made on the device,
    e.g. "its context holds a gain != 1", without a sync). Writes into `output`
    ([T, Hq, D]) and returns it. One kernel launch, no device-to-host synchronisation.
    """
    if triton is None:
        raise RuntimeError("anchored_prefill_attention needs Triton, which is not installed "
                           "(pip install triton; the pure-torch path is "
                           "kernels.anchored_prefill_torch.anchored_paged_attention)")
    check_arguments(query, key_cache, value_cache, block_table, output, requests, enabled)
    n_tokens, _, head_dim = query.shape
    _, block_size, n_kv_heads, _ = key_cache.shape
    n_requests = requests.shape[0]
    if n_requests == 0 or max_query_len <= 0 or n_tokens == 0:
        return output
    shape = tiles(query, n_kv_heads, max_query_len)

    interpreted = _is_interpreted(_anchored_prefill_kernel)
    if interpreted != _is_interpreted(triton.language.standard.cdiv):
        # triton decides interpreter-or-compiler per function at decoration time, its own
        # library included: a mix cannot run
        raise RuntimeError(
            "Triton interpreter mode differs between triton (imported "
            f"{'with' if not interpreted else 'without'} TRITON_INTERPRET=1) and this kernel "
            "module: set TRITON_INTERPRET before triton is first imported in the process")
    dot_fp32, dot_precision = dot_modes(interpreted, query.dtype)

    grid = (triton.cdiv(int(max_query_len), shape.block_q), n_requests, n_kv_heads)
    _anchored_prefill_kernel[grid](
        query, key_cache, value_cache, output,
        block_table, query_start_loc, seq_lens, slot_gain_k, slot_gain_v, requests,
        requests if enabled is None else enabled,
        float(scale) * LOG2E,
        *query.stride(), *key_cache.stride(), *value_cache.stride(), *output.stride(),
        *block_table.stride(),
        block_size,
        HEAD_DIM=head_dim, BLOCK_D=shape.block_d, GROUP=shape.group, GROUP_PAD=shape.group_pad,
        BLOCK_Q=shape.block_q, BLOCK_N=shape.block_n,
        DOT_FP32=dot_fp32, DOT_PRECISION=dot_precision, HAS_ENABLED=enabled is not None,
        num_warps=shape.num_warps, num_stages=2,
    )
    return output
