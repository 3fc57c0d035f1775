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
"""

from __future__ import annotations

import functools
import os

import torch

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


_LOG2E = 1.4426950408889634


def _next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


@functools.lru_cache(maxsize=None)
def _big_shared_memory(device: torch.device) -> bool:
    """At least 160 KiB of shared memory per block (A100, H100/H200, B200)."""
    if device.type != "cuda":
        return True
    props = torch.cuda.get_device_properties(device)
    return getattr(props, "shared_memory_per_block_optin", 0) >= 160 * 1024


def _block_sizes(head_dim_pad: int, group_pad: int, max_query_len: int, element_size: int,
                 big_smem: bool = True):
    """(BLOCK_Q, BLOCK_N, num_warps) for one launch (BLOCK_M = BLOCK_Q * group_pad rows).

    Chosen from sm_90 compiles (ptxas resource usage, no measured timings yet): with unit
    dim strides, 16-bit inputs run without register spills at BLOCK_M x BLOCK_N x D =
    128 x 64 x 128 (8 warps, ~99 KiB shared memory at 2 stages), 64 x 32 x 256.
    fp32 (IEEE dots, no tensor cores) gets small tiles; it is a correctness path.
    """
    if element_size == 4:
        target_m = 32 if head_dim_pad <= 128 else 16
        block_n = 16
    else:
        target_m = 128 if head_dim_pad <= 128 else 64
        block_n = 64 if head_dim_pad <= 64 or (head_dim_pad <= 128 and big_smem) else 32
    block_q = max(1, target_m // group_pad)
    # chunks of a few tokens (one-token extensions over cached context) get the smallest
    # row block tl.dot allows (16 rows); two variants per shape, so few compilations
    if _next_pow2(max_query_len) * group_pad <= 16:
        block_q = min(block_q, max(1, 16 // group_pad))
    block_m = block_q * group_pad
    num_warps = 8 if element_size < 4 and block_m * head_dim_pad >= 128 * 64 else 4
    return block_q, block_n, num_warps


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
    if query.dim() != 3 or key_cache.dim() != 4 or value_cache.dim() != 4:
        raise ValueError(f"expected query [T, Hq, D] and caches [blocks, block_size, Hkv, D], "
                         f"got {tuple(query.shape)}, {tuple(key_cache.shape)}, "
                         f"{tuple(value_cache.shape)}")
    n_tokens, n_heads, head_dim = query.shape
    num_blocks, block_size, n_kv_heads, k_dim = key_cache.shape
    if tuple(value_cache.shape) != tuple(key_cache.shape) or k_dim != head_dim:
        raise ValueError(f"key/value caches {tuple(key_cache.shape)} / "
                         f"{tuple(value_cache.shape)} do not match head size {head_dim}")
    if n_heads % n_kv_heads:
        raise ValueError(f"{n_heads} query heads are not a multiple of {n_kv_heads} KV heads")
    if tuple(output.shape) != tuple(query.shape):
        raise ValueError(f"output {tuple(output.shape)} must have the query's shape "
                         f"{tuple(query.shape)}")
    if query.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"unsupported query dtype {query.dtype}")
    if key_cache.dtype != query.dtype or value_cache.dtype != query.dtype:
        raise ValueError(f"KV cache dtype {key_cache.dtype}/{value_cache.dtype} differs from "
                         f"the query's {query.dtype} (quantised caches are not supported)")
    if block_table.dim() != 2:
        raise ValueError(f"block_table must be [R, max_blocks], got {tuple(block_table.shape)}")
    if requests.dim() != 1:
        raise ValueError(f"requests must be 1-D, got {tuple(requests.shape)}")
    if enabled is not None and tuple(enabled.shape) != tuple(requests.shape):
        raise ValueError(f"enabled {tuple(enabled.shape)} must have one entry per request "
                         f"{tuple(requests.shape)}")
    n_requests = requests.shape[0]
    if n_requests == 0 or max_query_len <= 0 or n_tokens == 0:
        return output

    group = n_heads // n_kv_heads
    group_pad = _next_pow2(group)
    block_d = max(16, _next_pow2(head_dim))
    block_q, block_n, num_warps = _block_sizes(block_d, group_pad, int(max_query_len),
                                               query.element_size(),
                                               _big_shared_memory(query.device))

    interpreted = _is_interpreted(_anchored_prefill_kernel)
    if interpreted != _is_interpreted(triton.language.standard.cdiv):
        # triton decides interpreter-or-compiler per function at decoration time, its own
        # library included: a mix cannot run
        raise RuntimeError(
            "Triton interpreter mode differs between triton (imported "
            f"{'with' if not interpreted else 'without'} TRITON_INTERPRET=1) and this kernel "
            "module: set TRITON_INTERPRET before triton is first imported in the process")
    # the interpreter's bf16 tl.dot is wrong: do those dots in fp32 there
    dot_fp32 = (interpreted or os.environ.get("TRITON_INTERPRET") == "1") and \
        query.dtype == torch.bfloat16
    dot_precision = "ieee" if (query.dtype == torch.float32 or dot_fp32) else "tf32"

    grid = (triton.cdiv(int(max_query_len), block_q), n_requests, n_kv_heads)
    _anchored_prefill_kernel[grid](
        query, key_cache, value_cache, output,
        block_table, query_start_loc, seq_lens, slot_gain_k, slot_gain_v, requests,
        requests if enabled is None else enabled,
        float(scale) * _LOG2E,
        *query.stride(), *key_cache.stride(), *value_cache.stride(), *output.stride(),
        *block_table.stride(),
        block_size,
        HEAD_DIM=head_dim, BLOCK_D=block_d, GROUP=group, GROUP_PAD=group_pad,
        BLOCK_Q=block_q, BLOCK_N=block_n,
        DOT_FP32=dot_fp32, DOT_PRECISION=dot_precision, HAS_ENABLED=enabled is not None,
        num_warps=num_warps, num_stages=2,
    )
    return output
