"""vLLM's CPU attention backend with the anchored prefill path (overrides CPU_ATTN).

Every layer runs the stock kernel; when the step involves anchored gains, the prefilling
requests whose context holds a gain != 1 are recomputed over the paged cache (which already
holds this step's K/V) by `anchored_paged_attention` (torch). Decode rows stay plain.
(The Triton kernel GPUs run is tested inside a CPU engine through TRITON_ATTN itself: the
test environment's switch, tests/cpu_test_env.)
"""

from __future__ import annotations

import torch
from vllm.logger import init_logger
from vllm.v1.attention.backends.cpu_attn import (
    CPUAttentionBackend,
    CPUAttentionBackendImpl,
    CPUAttentionMetadataBuilder,
)

from ...kernels.anchored_prefill_torch import anchored_paged_attention
from .. import compat
from . import cpu_kv_layout
from .forward import AnchoredBackendMixin, AnchoredForwardMixin

logger = init_logger("vllm.videoanchor")


class AnchoredCPUAttentionMetadataBuilder(CPUAttentionMetadataBuilder):
    """Also carries which requests are still prefilling (decode stays plain)."""

    def build(self, common_prefix_len, common_attn_metadata, fast_build=False):
        metadata = super().build(common_prefix_len, common_attn_metadata, fast_build)
        compat.copy_is_prefilling(metadata, common_attn_metadata)
        return metadata


class AnchoredCPUAttentionImpl(AnchoredForwardMixin, CPUAttentionBackendImpl):
    def anchored_recompute(self, layer, query, kv_cache, rows, state, output) -> None:
        layout = compat.layer_kv_layout(layer)
        if layout not in cpu_kv_layout.READABLE_ISAS:
            # unreachable: engines with such a layout never solve (availability.py); never fail a step
            logger.error("anchored attention: cannot read KV layout %r; serving plain attention", layout)
            return
        key_cache, value_cache = cpu_kv_layout.kv_views(kv_cache, layout)
        step = rows.step
        out = output.view(output.shape[0], self.num_heads, self.head_size)
        starts = step.query_start_loc.tolist()
        for r in rows.chosen():
            q = query[starts[r]:starts[r + 1]]
            anchored_paged_attention(
                q, key_cache, value_cache,
                step.block_table[r:r + 1],
                torch.tensor([0, q.shape[0]]),
                step.seq_lens[r:r + 1],
                state.slot_gain_k, state.slot_gain_v, self.scale,
                output=out[starts[r]:starts[r + 1]],
            )


class AnchoredCPUAttentionBackend(AnchoredBackendMixin, CPUAttentionBackend):
    """CPU_ATTN with the anchored path; its name stays CPU_ATTN (the CPU platform's one backend)."""

    @classmethod
    def anchoring_refusal(cls, vllm_config) -> str | None:
        """The KV layout vLLM picked must be one we read back (cpu_kv_layout.py)."""
        return cpu_kv_layout.layout_refusal(compat.engine_kv_layout(vllm_config),
                                            compat.engine_kv_cache_dtype(vllm_config))

    @staticmethod
    def get_impl_cls():
        return AnchoredCPUAttentionImpl

    @staticmethod
    def get_builder_cls():
        return AnchoredCPUAttentionMetadataBuilder
