"""kv_views reads back, bit-exactly, what vLLM's own CPU_ATTN writer put in the KV cache."""

import pytest
import torch

pytest.importorskip("vllm")
from vllm_videoanchor.engine import compat  # noqa: E402
from vllm_videoanchor.engine.attention.cpu_kv_layout import (  # noqa: E402
    READABLE_ISAS,
    ZERO_COPY_ISAS,
    kv_views,
    unreadable_isa_message,
)

NUM_KV_HEADS = 2
NUM_BLOCKS = 5
# vLLM's amx writer runs only on CPUs with AMX tiles (where vLLM picks that layout at all)
AMX = torch.cpu._is_amx_tile_supported()
NO_AMX = "vLLM's amx KV writer needs a CPU with AMX tiles; vLLM never picks the amx layout on this one"


def _cases():
    """(isa, dtype, block_size, head_size) for every readable ISA, as the writer allows."""
    cases = []
    for isa in READABLE_ISAS:
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            # the amx writer needs block_size % 32 == 0 for 2-byte dtypes (vLLM picks amx
            # for bf16 with block_size % 32 == 0 only); 80 checks its vec fallback
            sizes = (32, 64) if isa == "amx" and dtype != torch.float32 else (16, 32)
            for block_size in sizes:
                for head_size in (64, 128, 80):
                    cases.append(_case(isa, dtype, block_size, head_size))
    return cases


def _case(isa, *values):
    """pytest.param(isa, *values), skipped for the amx layout on a CPU without AMX."""
    return pytest.param(isa, *values, marks=pytest.mark.skipif(isa == "amx" and not AMX, reason=NO_AMX))


def _fill(isa, dtype, block_size, head_size, seed, offset_blocks=0):
    """A zeroed cache written by vLLM's cpu_attn_reshape_and_cache at random slots."""
    g = torch.Generator().manual_seed(seed)
    num_slots = NUM_BLOCKS * block_size
    num_tokens = num_slots * 2 // 3
    key = torch.randn(num_tokens, NUM_KV_HEADS, head_size, generator=g).to(dtype)
    value = torch.randn(num_tokens, NUM_KV_HEADS, head_size, generator=g).to(dtype)
    slots = torch.randperm(num_slots, generator=g)[:num_tokens]
    # as vLLM allocates it; optionally a slice of a bigger buffer (nonzero storage offset)
    storage = torch.zeros(NUM_BLOCKS + offset_blocks, NUM_KV_HEADS, block_size, 2 * head_size,
                          dtype=dtype)
    kv_cache = storage[offset_blocks:]
    # exactly how CPUAttentionBackendImpl.do_kv_cache_update splits it for the writer
    key_cache, value_cache = kv_cache.view(
        NUM_BLOCKS, NUM_KV_HEADS, block_size * 2, head_size).chunk(2, dim=2)
    compat.cpu_attn_ops().cpu_attn_reshape_and_cache(key, value, key_cache, value_cache, slots, isa)
    return kv_cache, key, value, slots


def _assert_reads_back(k, v, key, value, slots, block_size):
    num_blocks = k.shape[0]
    k = k.reshape(num_blocks * block_size, NUM_KV_HEADS, -1)
    v = v.reshape(num_blocks * block_size, NUM_KV_HEADS, -1)
    assert torch.equal(k[slots], key)
    assert torch.equal(v[slots], value)
    unwritten = torch.ones(num_blocks * block_size, dtype=torch.bool)
    unwritten[slots] = False
    assert not k[unwritten].any() and not v[unwritten].any()


@pytest.mark.parametrize("isa,dtype,block_size,head_size", _cases())
def test_reads_back_what_vllm_wrote(isa, dtype, block_size, head_size):
    kv_cache, key, value, slots = _fill(isa, dtype, block_size, head_size, seed=block_size + head_size)
    k, v = kv_views(kv_cache, isa)
    shape = (NUM_BLOCKS, block_size, NUM_KV_HEADS, head_size)
    assert k.shape == shape and v.shape == shape
    assert k.dtype == dtype and v.dtype == dtype
    _assert_reads_back(k, v, key, value, slots, block_size)
    if isa in ZERO_COPY_ISAS:
        assert k.untyped_storage().data_ptr() == kv_cache.untyped_storage().data_ptr()
        assert v.untyped_storage().data_ptr() == kv_cache.untyped_storage().data_ptr()


@pytest.mark.parametrize("isa", [_case(isa) for isa in READABLE_ISAS])
def test_nonzero_storage_offset_and_block_subset(isa):
    dtype = torch.bfloat16
    block_size, head_size = 32, 64
    kv_cache, key, value, slots = _fill(isa, dtype, block_size, head_size, seed=7, offset_blocks=2)
    assert kv_cache.storage_offset() > 0
    _assert_reads_back(*kv_views(kv_cache, isa), key, value, slots, block_size)

    blocks = torch.tensor([3, 0, 4], dtype=torch.int32)
    k, v = kv_views(kv_cache, isa, blocks)
    full_k, full_v = kv_views(kv_cache, isa)
    assert torch.equal(k, full_k[blocks.long()]) and torch.equal(v, full_v[blocks.long()])


@pytest.mark.parametrize("isa", ["neon", "vxe", "vsx", "rvv", "amx_fp8", None])
def test_unreadable_isa_raises_naming_it(isa):
    kv_cache = torch.zeros(2, NUM_KV_HEADS, 32, 128)
    with pytest.raises(ValueError, match=repr(isa)):
        kv_views(kv_cache, isa)
    message = unreadable_isa_message(isa)
    assert repr(isa) in message and "\n" not in message
    assert all(readable in message for readable in READABLE_ISAS)


def test_fp8_cache_is_not_readable():
    kv_cache = torch.zeros(2, NUM_KV_HEADS, 32, 128, dtype=torch.uint8)
    with pytest.raises(ValueError, match="'vec'"):
        kv_views(kv_cache, "vec")
