"""vLLM's CUDA attention backends with the anchored prefill path (FLASH_ATTN, TRITON_ATTN;
FLASHINFER in flashinfer_attention.py, whose module needs the flashinfer package).

The subclasses keep vLLM's names and run vLLM's own kernel for every row. When the step
involves anchored gains (gains.py: some anchored request has run on this engine), the
first layer of the step writes the step's gains at its KV slots and every layer then
launches the Triton kernel once over the step's prefilling requests; the kernel skips, on
the device, every request whose context holds no gain != 1, so plain requests keep vLLM's
output bit for bit. No device-to-host sync anywhere: which requests are prefilling comes
from the host copies in CommonAttentionMetadata, which the builders keep a reference to.
Until an anchored request runs, a step costs one Python flag check per layer: no kernel,
no sync, no allocation.

The anchored path runs in Python inside `forward`, i.e. in eager and PIECEWISE steps
only; FULL CUDA graphs replay without Python (decode-only steps, one-token prefill rows),
so engines with FULL graphs cannot anchor (availability.py says so, and `vllm-videoanchor
serve` sets cudagraph_mode PIECEWISE on CUDA).
"""

from __future__ import annotations

from vllm.v1.attention.backend import AttentionType
from vllm.v1.attention.backends.flash_attn import (
    FlashAttentionBackend,
    FlashAttentionImpl,
    FlashAttentionMetadataBuilder,
)
from vllm.v1.attention.backends.triton_attn import (
    TritonAttentionBackend,
    TritonAttentionImpl,
    TritonAttentionMetadataBuilder,
)

from . import compat
from .gains import GAINS


class AnchoredBuilderMixin:
    """Keeps the step's CommonAttentionMetadata on the backend's metadata (a reference)."""

    def build(self, common_prefix_len, common_attn_metadata, fast_build=False):
        metadata = super().build(common_prefix_len, common_attn_metadata, fast_build)
        compat.keep_common_metadata(metadata, common_attn_metadata)
        return metadata


class AnchoredImplMixin:
    """vLLM's kernel for every row, then the anchored prefill over the anchored requests."""

    def forward(self, layer, query, key, value, kv_cache, attn_metadata, output,
                output_scale=None, output_block_scale=None):
        output = super().forward(layer, query, key, value, kv_cache, attn_metadata, output,
                                 output_scale, output_block_scale)
        if attn_metadata is None or not GAINS.active() or self.attn_type != AttentionType.DECODER:
            return output
        self.anchored_recompute(query, kv_cache, attn_metadata, output)
        return output

    def anchored_recompute(self, query, kv_cache, attn_metadata, output) -> None:
        from ..kernels.anchored_prefill import anchored_prefill_attention

        key_cache, value_cache = compat.cuda_kv_views(kv_cache, self.head_size)
        num_blocks, block_size = key_cache.shape[:2]
        rows = GAINS.begin_step(attn_metadata, num_blocks * block_size, block_size)
        if not rows.requests:
            return
        step = compat.step_metadata(attn_metadata)
        anchored_prefill_attention(
            query.view(query.shape[0], self.num_heads, self.head_size), key_cache, value_cache,
            step.block_table, step.query_start_loc, step.seq_lens, GAINS.slot_gain_k, GAINS.slot_gain_v,
            self.scale, output.view(output.shape[0], self.num_heads, self.head_size),
            rows.indices, step.max_query_len, rows.enabled)

    def anchored_unsupported(self) -> str | None:
        """Why this layer's attention is not what the kernel computes (None when it is):
        read once at start-up (availability.py), never per step."""
        if compat.is_quantized_kv_cache(self.kv_cache_dtype):
            return f"a quantised KV cache (kv_cache_dtype={self.kv_cache_dtype!r})"
        window = getattr(self, "sliding_window", None)
        if window not in (None, (-1, -1)):
            return "sliding-window attention"
        if getattr(self, "logits_soft_cap", None):
            return "logits soft-capping"
        if getattr(self, "alibi_slopes", None) is not None:
            return "ALiBi"
        if getattr(self, "sinks", None) is not None:
            return "attention sinks"
        return None


class AnchoredFlashAttentionMetadataBuilder(AnchoredBuilderMixin, FlashAttentionMetadataBuilder):
    pass


class AnchoredFlashAttentionImpl(AnchoredImplMixin, FlashAttentionImpl):
    pass


class AnchoredFlashAttentionBackend(FlashAttentionBackend):
    """FLASH_ATTN with the anchored path; its name stays FLASH_ATTN."""

    @staticmethod
    def get_impl_cls():
        return AnchoredFlashAttentionImpl

    @staticmethod
    def get_builder_cls():
        return AnchoredFlashAttentionMetadataBuilder


class AnchoredTritonAttentionMetadataBuilder(AnchoredBuilderMixin, TritonAttentionMetadataBuilder):
    pass


class AnchoredTritonAttentionImpl(AnchoredImplMixin, TritonAttentionImpl):
    pass


class AnchoredTritonAttentionBackend(TritonAttentionBackend):
    """TRITON_ATTN with the anchored path; its name stays TRITON_ATTN."""

    @staticmethod
    def get_impl_cls():
        return AnchoredTritonAttentionImpl

    @staticmethod
    def get_builder_cls():
        return AnchoredTritonAttentionMetadataBuilder
