"""The forward every anchored attention backend shares (CPU_ATTN in attention.py, the CUDA
backends in gpu_attention.py): vLLM's own kernel for every row, then, only when some
anchored request has run on this engine (gains.py), the step's gain write and the
backend's recompute of the prefilling requests. Before that, a step costs one flag check.
"""

from __future__ import annotations

import inspect

from vllm.v1.attention.backend import AttentionType

from . import gains


class AnchoredForwardMixin:
    """Put first in the bases of a vLLM AttentionImpl; subclasses supply `anchored_recompute`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not hasattr(self, "attn_type"):  # FlashInferImpl takes attn_type but never stores it
            given = inspect.signature(super().__init__).bind(*args, **kwargs).arguments
            self.attn_type = given.get("attn_type", AttentionType.DECODER)

    def forward(self, layer, query, key, value, kv_cache, attn_metadata, output,
                output_scale=None, output_block_scale=None):
        output = super().forward(layer, query, key, value, kv_cache, attn_metadata, output,
                                 output_scale, output_block_scale)
        state = gains.GAINS
        if attn_metadata is None or not state.active() or self.attn_type != AttentionType.DECODER:
            return output
        # every backend's layer cache is (logically) [num_blocks, num_kv_heads, block_size, 2 * head_size]
        num_blocks, _, block_size, _ = kv_cache.shape
        rows = state.begin_step(attn_metadata, num_blocks * block_size, block_size)
        if rows.requests:
            self.anchored_recompute(layer, query, kv_cache, rows, state, output)
        return output

    def anchored_recompute(self, layer, query, kv_cache, rows: gains.AnchoredRows, state: gains.GainState,
                           output) -> None:
        """Overwrite the rows of `rows`' anchored requests in `output` with anchored attention."""
        raise NotImplementedError
