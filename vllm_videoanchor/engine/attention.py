"""vLLM's CPU attention backend with the anchored prefill path (overrides CPU_ATTN).

Every layer runs the stock kernel; when the step involves anchored gains, the prefilling
requests whose context holds a gain != 1 are recomputed with `anchored_paged_attention`
over the paged cache (which already holds this step's K/V). Decode rows stay plain.
"""

from __future__ import annotations

import torch
from vllm.v1.attention.backend import AttentionType
from vllm.v1.attention.backends.cpu_attn import (
    CPUAttentionBackend,
    CPUAttentionBackendImpl,
    CPUAttentionMetadataBuilder,
)

from .anchored_attention import anchored_paged_attention
from .gains import GAINS


# KV layouts of CPU_ATTN read back here (checked against cpu_attn_reshape_and_cache):
# each (block, head) page holds K dim-major ([head_size, block_size]) then V token-major.
SUPPORTED_ISAS = ("vec", "vec16")


def paged_views(kv_cache: torch.Tensor):
    """[num_blocks, block_size, kv_heads, head_size] views (no copy) of CPU_ATTN's K and V."""
    num_blocks, num_kv_heads, block_size, two_head_size = kv_cache.shape
    head_size = two_head_size // 2
    page = block_size * head_size
    block_stride, head_stride = kv_cache.stride(0), kv_cache.stride(1)
    keys = kv_cache.as_strided(
        (num_blocks, num_kv_heads, head_size, block_size),
        (block_stride, head_stride, block_size, 1),
        kv_cache.storage_offset(),
    ).permute(0, 3, 1, 2)
    values = kv_cache.as_strided(
        (num_blocks, num_kv_heads, block_size, head_size),
        (block_stride, head_stride, head_size, 1),
        kv_cache.storage_offset() + page,
    ).transpose(1, 2)
    return keys, values


class AnchoredCPUAttentionMetadataBuilder(CPUAttentionMetadataBuilder):
    """Also carries which requests are still prefilling (decode stays plain)."""

    def build(self, common_prefix_len, common_attn_metadata, fast_build=False):
        metadata = super().build(common_prefix_len, common_attn_metadata, fast_build)
        metadata.is_prefilling = common_attn_metadata.is_prefilling
        return metadata


class AnchoredCPUAttentionImpl(CPUAttentionBackendImpl):
    def forward(self, layer, query, key, value, kv_cache, attn_metadata, output,
                output_scale=None, output_block_scale=None):
        output = super().forward(layer, query, key, value, kv_cache, attn_metadata, output,
                                 output_scale, output_block_scale)
        if attn_metadata is None or not GAINS.active() or self.attn_type != AttentionType.DECODER:
            return output
        num_blocks, _, block_size, _ = kv_cache.shape
        requests = GAINS.begin_step(attn_metadata, num_blocks * block_size, block_size)
        if requests:
            if getattr(layer, "isa", None) not in SUPPORTED_ISAS:
                raise NotImplementedError(
                    f"anchored attention: CPU KV layout {getattr(layer, 'isa', None)!r} is not "
                    f"supported (only {SUPPORTED_ISAS})"
                )
            self._recompute(requests, query, kv_cache, attn_metadata, output)
        return output

    def _recompute(self, requests, query, kv_cache, metadata, output):
        key_cache, value_cache = paged_views(kv_cache)
        out = output.view(output.shape[0], self.num_heads, self.head_size)
        starts = metadata.query_start_loc.tolist()
        for r in requests:
            q = query[starts[r]:starts[r + 1]]
            anchored_paged_attention(
                q, key_cache, value_cache,
                metadata.block_table[r:r + 1],
                torch.tensor([0, q.shape[0]]),
                metadata.seq_lens[r:r + 1],
                GAINS.slot_gain_k, GAINS.slot_gain_v, self.scale,
                output=out[starts[r]:starts[r + 1]],
            )


class AnchoredCPUAttentionBackend(CPUAttentionBackend):
    """CPU_ATTN with the anchored path; its name stays CPU_ATTN (the CPU platform uses no other)."""

    @staticmethod
    def get_impl_cls():
        return AnchoredCPUAttentionImpl

    @staticmethod
    def get_builder_cls():
        return AnchoredCPUAttentionMetadataBuilder
