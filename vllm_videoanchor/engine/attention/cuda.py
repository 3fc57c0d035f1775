"""vLLM's CUDA attention backends with the anchored prefill path (FLASH_ATTN, TRITON_ATTN;
FLASHINFER in flashinfer.py, whose module needs the flashinfer package).

The subclasses keep vLLM's names and run vLLM's own kernel for every row. When the step
involves anchored gains (some anchored request has run on this engine), the
first layer of the step writes the step's gains at its KV slots and every layer then
launches the Triton kernel once over the step's prefilling requests; the kernel skips, on
the device, every request whose context holds no gain != 1, so plain requests keep vLLM's
output bit for bit. No device-to-host sync anywhere: which requests are prefilling comes
from the host copies in CommonAttentionMetadata, which the builders keep a reference to.
Until an anchored request runs, a step costs one Python flag check per layer: no kernel,
no sync, no allocation.

The anchored path runs in Python inside `forward`, i.e. in eager and PIECEWISE steps
only; FULL CUDA graphs replay without Python (decode-only steps, one-token prefill rows),
so engines with FULL graphs cannot anchor (`AnchoredCudaBackendMixin.anchoring_refusal`, read
by the start-up verdict in availability.py; `vllm-videoanchor serve` sets cudagraph_mode
PIECEWISE on CUDA).

From vLLM 0.33, FLASH_ATTN and FLASHINFER declare `supports_kv_cache_update_bypass`: a model
whose fused kernel has already written K/V into the cache may call the attention with `key`
and `value` None. Our backends inherit that flag unchanged (a model that fuses the insert
keeps it under the plugin) because the anchored path never reads `key` or `value`: it reads
the query and the paged cache, which holds the step's K/V either way, and writes the gains
at the step's slots from the metadata's slot mapping. The stock forward, which we call
first, handles None itself (test_engine_gpu_attention.py runs the anchored forward with
key/value None).
"""

from __future__ import annotations

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

from .. import compat
from .forward import AnchoredBackendMixin, AnchoredForwardMixin


class AnchoredBuilderMixin:
    """Keeps the step's CommonAttentionMetadata on the backend's metadata (a reference)."""

    def build(self, common_prefix_len, common_attn_metadata, fast_build=False):
        metadata = super().build(common_prefix_len, common_attn_metadata, fast_build)
        compat.keep_common_metadata(metadata, common_attn_metadata)
        return metadata


class AnchoredImplMixin(AnchoredForwardMixin):
    """vLLM's kernel for every row, then one launch of the Triton kernel over the step's
    prefilling requests (it skips, on the device, those whose context holds no gain != 1)."""

    def anchored_recompute(self, layer, query, kv_cache, rows, state, output) -> None:
        from ...kernels.anchored_prefill import anchored_prefill_attention

        key_cache, value_cache = compat.cuda_kv_views(kv_cache, self.head_size)
        step = rows.step
        anchored_prefill_attention(
            query.view(query.shape[0], self.num_heads, self.head_size), key_cache, value_cache,
            step.block_table, step.query_start_loc, step.seq_lens, state.slot_gain_k, state.slot_gain_v,
            self.scale, output.view(output.shape[0], self.num_heads, self.head_size),
            rows.indices, step.max_query_len, rows.enabled)


class AnchoredCudaBackendMixin(AnchoredBackendMixin):
    """What anchoring needs of an engine on the CUDA backends, whatever platform runs them."""

    @classmethod
    def anchoring_refusal(cls, vllm_config) -> str | None:
        """Triton must be there, and no FULL CUDA graphs (their replays run no Python, and the
        anchored path runs in Python inside the attention's forward)."""
        from ...kernels.anchored_prefill import triton_available
        from .forward import FULL_GRAPHS_ADVICE

        if not triton_available():
            return "anchored attention on GPUs needs Triton, which is not installed"
        if compat.full_cuda_graphs(vllm_config):
            return ("this engine replays FULL CUDA graphs, which skip the anchored attention (it runs in Python): "
                    + FULL_GRAPHS_ADVICE)
        return None


class AnchoredFlashAttentionMetadataBuilder(AnchoredBuilderMixin, FlashAttentionMetadataBuilder):
    pass


class AnchoredFlashAttentionImpl(AnchoredImplMixin, FlashAttentionImpl):
    pass


class AnchoredFlashAttentionBackend(AnchoredCudaBackendMixin, FlashAttentionBackend):
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


class AnchoredTritonAttentionBackend(AnchoredCudaBackendMixin, TritonAttentionBackend):
    """TRITON_ATTN with the anchored path; its name stays TRITON_ATTN."""

    @staticmethod
    def get_impl_cls():
        return AnchoredTritonAttentionImpl

    @staticmethod
    def get_builder_cls():
        return AnchoredTritonAttentionMetadataBuilder
