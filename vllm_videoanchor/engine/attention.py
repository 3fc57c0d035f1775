"""vLLM's CPU attention backend with the anchored prefill path (overrides CPU_ATTN).

Every layer runs the stock kernel; when the step involves anchored gains, the prefilling
requests whose context holds a gain != 1 are recomputed over the paged cache (which already
holds this step's K/V): by `anchored_paged_attention` (torch, the default), or by the
Triton kernel GPUs run (settings.attention_kernel = "triton", under the Triton interpreter
on CPU), so that the engine tests exercise that exact kernel. Decode rows stay plain.
"""

from __future__ import annotations

import torch
from vllm.logger import init_logger
from vllm.v1.attention.backend import AttentionType
from vllm.v1.attention.backends.cpu_attn import (
    CPUAttentionBackend,
    CPUAttentionBackendImpl,
    CPUAttentionMetadataBuilder,
)

from . import compat, cpu_kv_layout
from .anchored_attention import anchored_paged_attention
from .gains import GAINS
from .prefill_kernel import attention_kernel

logger = init_logger("vllm.videoanchor")


class AnchoredCPUAttentionMetadataBuilder(CPUAttentionMetadataBuilder):
    """Also carries which requests are still prefilling (decode stays plain)."""

    def build(self, common_prefix_len, common_attn_metadata, fast_build=False):
        metadata = super().build(common_prefix_len, common_attn_metadata, fast_build)
        compat.copy_is_prefilling(metadata, common_attn_metadata)
        return metadata


class AnchoredCPUAttentionImpl(CPUAttentionBackendImpl):
    def forward(self, layer, query, key, value, kv_cache, attn_metadata, output,
                output_scale=None, output_block_scale=None):
        output = super().forward(layer, query, key, value, kv_cache, attn_metadata, output,
                                 output_scale, output_block_scale)
        if attn_metadata is None or not GAINS.active() or self.attn_type != AttentionType.DECODER:
            return output
        num_blocks, _, block_size, _ = kv_cache.shape
        rows = GAINS.begin_step(attn_metadata, num_blocks * block_size, block_size)
        if rows.requests:
            layout = compat.layer_kv_layout(layer)
            if layout not in cpu_kv_layout.READABLE_ISAS:
                # unreachable: engines with such a layout never solve (model.py); never fail a step
                logger.error("anchored attention: cannot read KV layout %r; serving plain attention", layout)
                return output
            self._recompute(rows, query, cpu_kv_layout.kv_views(kv_cache, layout), attn_metadata, output)
        return output

    def _recompute(self, rows, query, kv_views, metadata, output):
        key_cache, value_cache = kv_views
        step = compat.step_metadata(metadata)
        out = output.view(output.shape[0], self.num_heads, self.head_size)
        if attention_kernel() == "triton":  # all the step's anchored requests in one launch
            from ..kernels.anchored_prefill import anchored_prefill_attention

            anchored_prefill_attention(query, key_cache, value_cache, step.block_table, step.query_start_loc,
                                       step.seq_lens, GAINS.slot_gain_k, GAINS.slot_gain_v, self.scale, out,
                                       rows.indices, step.max_query_len, rows.enabled)
            return
        starts = step.query_start_loc.tolist()
        for r in rows.chosen():
            q = query[starts[r]:starts[r + 1]]
            anchored_paged_attention(
                q, key_cache, value_cache,
                step.block_table[r:r + 1],
                torch.tensor([0, q.shape[0]]),
                step.seq_lens[r:r + 1],
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
