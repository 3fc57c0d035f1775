"""Read K and V back out of vLLM's CPU_ATTN paged KV cache, per kernel ISA.

Why this exists: the anchored recompute needs K/V as [num_blocks, block_size, kv_heads,
head_size], but CPU_ATTN's kv_cache ([num_blocks, num_kv_heads, block_size, 2 * head_size],
one (block, head) page of 2 * block_size * head_size elements, K first then V) is packed
differently per ISA by `torch.ops._C.cpu_attn_reshape_and_cache`, which vLLM picks per
model in `_get_attn_isa`. Reading a layout we have not checked would silently feed the
recompute garbage, so only layouts verified element by element against vLLM's own writer
are readable (tests/engine/test_engine_cpu_kv_layout.py fills caches with that writer and reads
them back bit-exactly). Positions inside one page, for token t < block_size, dim d < head_size
(page offset, in elements; V starts at P = block_size * head_size):

- "vec", "vec16": K[t, d] at d * block_size + t (dim-major); V[t, d] at P + t * head_size + d.
- "amx" (head_size % 32 == 0), with n = 4 // itemsize (2 for bf16/fp16, 1 for fp32):
  K[t, d] at (t // 16) * 16 * head_size + (d // n) * 16 * n + (t % 16) * n + d % n
  V[t, d] at P + (d // 16) * 16 * block_size + (t // n) * 16 * n + (d % 16) * n + t % n
  i.e. 16-token K tiles and 16-dim V tiles, VNNI-interleaved in pairs for 2-byte dtypes.
  No single stride per token/dim exists, so this one is a strided view plus one gathered
  copy. For head_size % 32 != 0 the writer falls back to the "vec" layout (and vLLM never
  picks "amx" then: such heads get "vec16").

Not readable: "neon", "vxe", "vsx", "rvv" (the x86 build of vLLM cannot run their writer,
so their layout is unverified), and FP8 (uint8) caches, whose bytes need de-quantizing.
"""

from __future__ import annotations

import torch

READABLE_ISAS = ("vec", "vec16", "amx")
# ISAs whose K/V come back as zero-copy views of kv_cache ("amx" copies; see kv_views).
ZERO_COPY_ISAS = ("vec", "vec16")

_AMX_TILE = 16  # tokens per K tile / dims per V tile in the "amx" layout


def unreadable_isa_message(isa) -> str:
    """One-line user-facing reason the anchored path cannot run on this KV layout."""
    return (f"anchored attention cannot read vLLM's CPU KV layout {isa!r} "
            f"(readable: {', '.join(READABLE_ISAS)})")


def kv_views(kv_cache: torch.Tensor, isa: str, blocks: torch.Tensor | None = None):
    """K and V of CPU_ATTN's `kv_cache` as [num_blocks, block_size, num_kv_heads, head_size].

    Zero-copy strided views for "vec"/"vec16" (and "amx" when it falls back to the vec
    layout); for "amx" proper, one gathered copy of the cache (or of `blocks` only).
    `blocks` (optional 1-D block ids) restricts the result to those blocks, in that order:
    row i is block blocks[i] (a copy of just those pages, cheaper than the whole cache
    under "amx"). Raises ValueError for an ISA not in READABLE_ISAS or an unreadable cache.
    """
    if isa not in READABLE_ISAS:
        raise ValueError(unreadable_isa_message(isa))
    if kv_cache.dim() != 4 or kv_cache.shape[3] % 2:
        raise ValueError(f"CPU_ATTN kv_cache must be [num_blocks, num_kv_heads, block_size, "
                         f"2 * head_size], got {tuple(kv_cache.shape)}")
    if not kv_cache.dtype.is_floating_point or kv_cache.element_size() not in (2, 4):
        raise ValueError(f"anchored attention cannot read a {kv_cache.dtype} CPU KV cache "
                         f"(layout {isa!r}; FP8 caches are not readable)")
    num_blocks, num_kv_heads, block_size, two_head_size = kv_cache.shape
    head_size = two_head_size // 2
    if kv_cache.stride(3) != 1 or kv_cache.stride(2) != two_head_size:
        raise ValueError("CPU_ATTN kv_cache pages must be contiguous")
    if blocks is not None:
        kv_cache = kv_cache.index_select(0, blocks.to(torch.long))
        num_blocks = kv_cache.shape[0]
    block_stride, head_stride = kv_cache.stride(0), kv_cache.stride(1)
    page = block_size * head_size  # V starts here in every (block, head) page
    base = kv_cache.storage_offset()

    if isa in ("vec", "vec16") or head_size % 32:
        keys = kv_cache.as_strided(
            (num_blocks, num_kv_heads, head_size, block_size),
            (block_stride, head_stride, block_size, 1),
            base,
        ).permute(0, 3, 1, 2)
        values = kv_cache.as_strided(
            (num_blocks, num_kv_heads, block_size, head_size),
            (block_stride, head_stride, head_size, 1),
            base + page,
        ).transpose(1, 2)
        return keys, values

    # "amx": n-element VNNI groups (n = 2 for 2-byte dtypes, 1 for fp32).
    tile, n = _AMX_TILE, 4 // kv_cache.element_size()
    if block_size % tile or head_size % tile:
        raise ValueError(f"CPU KV layout 'amx' needs block_size and head_size divisible by "
                         f"{tile}, got {block_size} and {head_size}")
    # K: [block, head, t // 16, d // n, t % 16, d % n]
    keys = kv_cache.as_strided(
        (num_blocks, num_kv_heads, block_size // tile, head_size // n, tile, n),
        (block_stride, head_stride, tile * head_size, tile * n, n, 1),
        base,
    ).permute(0, 2, 4, 1, 3, 5).reshape(num_blocks, block_size, num_kv_heads, head_size)
    # V: [block, head, d // 16, t // n, d % 16, t % n]
    values = kv_cache.as_strided(
        (num_blocks, num_kv_heads, head_size // tile, block_size // n, tile, n),
        (block_stride, head_stride, tile * block_size, tile * n, n, 1),
        base + page,
    ).permute(0, 3, 5, 1, 2, 4).reshape(num_blocks, block_size, num_kv_heads, head_size)
    return keys, values


# The layout vLLM picks on these CPU architectures (for 32-multiple block sizes; "neon"
# always): none of them is readable, so anchoring is refused there up front.
ARCH_LAYOUTS = {"ARM": "neon", "S390X": "vxe", "POWERPC": "vsx", "RISCV": "rvv"}


def unreadable_layout_on(architecture: str) -> str | None:
    """The unreadable layout vLLM may pick on a CPU architecture (a CpuArchEnum name)."""
    layout = ARCH_LAYOUTS.get(architecture)
    return layout if layout not in READABLE_ISAS else None


def layout_refusal(layout: str, kv_cache_dtype: str) -> str | None:
    """Why a CPU engine with this KV layout and cache dtype cannot anchor (None: it can)."""
    if kv_cache_dtype.startswith("fp8"):
        return f"anchored attention cannot read an FP8 KV cache (--kv-cache-dtype {kv_cache_dtype})"
    if layout not in READABLE_ISAS:
        return unreadable_isa_message(layout)
    return None
