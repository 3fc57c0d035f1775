"""Host side of the Triton anchored prefill kernel (anchored_prefill.py): the argument
checks and the launch configuration (tile sizes, warps, dot precision).

Kept out of the kernel's file so that it reads as the kernel; the launcher there calls
these. Nothing here imports Triton. Absolute imports only: the kernel tests load
anchored_prefill.py from its path as a standalone module.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import torch

LOG2E = 1.4426950408889634  # the kernel's softmax runs in base 2


class Tiles(NamedTuple):
    """One launch's shape: the GQA group (padded to a power of two: rows of a program), the
    head size padded for tl.dot, the row block (BLOCK_M = block_q * group_pad rows), the
    key tile and the warps."""

    group: int
    group_pad: int
    block_d: int
    block_q: int
    block_n: int
    num_warps: int


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


@functools.lru_cache(maxsize=None)
def big_shared_memory(device: torch.device) -> bool:
    """At least 160 KiB of shared memory per block (A100, H100/H200, B200)."""
    if device.type != "cuda":
        return True
    props = torch.cuda.get_device_properties(device)
    return getattr(props, "shared_memory_per_block_optin", 0) >= 160 * 1024


def block_sizes(head_dim_pad: int, group_pad: int, max_query_len: int, element_size: int,
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
    if next_pow2(max_query_len) * group_pad <= 16:
        block_q = min(block_q, max(1, 16 // group_pad))
    block_m = block_q * group_pad
    num_warps = 8 if element_size < 4 and block_m * head_dim_pad >= 128 * 64 else 4
    return block_q, block_n, num_warps


def tiles(query: torch.Tensor, n_kv_heads: int, max_query_len: int) -> Tiles:
    """The launch's tiles for `query` ([T, Hq, D]) over `n_kv_heads` KV heads."""
    _, n_heads, head_dim = query.shape
    group = n_heads // n_kv_heads
    group_pad = next_pow2(group)
    block_d = max(16, next_pow2(head_dim))
    block_q, block_n, num_warps = block_sizes(block_d, group_pad, int(max_query_len), query.element_size(),
                                              big_shared_memory(query.device))
    return Tiles(group, group_pad, block_d, block_q, block_n, num_warps)


def dot_modes(interpreted: bool, dtype: torch.dtype) -> tuple[bool, str]:
    """(dots in fp32, tl.dot input precision): the interpreter's bf16 tl.dot is wrong, so
    those dots run in fp32 there; fp32 inputs use IEEE dots (no TF32)."""
    dot_fp32 = (interpreted or os.environ.get("TRITON_INTERPRET") == "1") and dtype == torch.bfloat16
    return dot_fp32, "ieee" if (dtype == torch.float32 or dot_fp32) else "tf32"


def check_arguments(query: torch.Tensor, key_cache: torch.Tensor, value_cache: torch.Tensor,
                    block_table: torch.Tensor, output: torch.Tensor, requests: torch.Tensor,
                    enabled: torch.Tensor | None) -> None:
    """ValueError naming what does not fit anchored_prefill_attention's contract."""
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
