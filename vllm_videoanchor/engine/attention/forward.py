"""The forward every anchored attention backend shares (cpu.py, cuda.py, flashinfer.py):
vLLM's own kernel for every row, then, only when some anchored request has run on this
engine, the step's gain write and the backend's recompute of the prefilling requests.
Before that, a step costs one flag check.

The step's gains live on the engine's own objects: the model creates one `GainState` and
hands it to each of its decoder attention layers (`gain_state`); an impl without one (a
layer of a model that is not ours) is stock attention. What the anchored recompute
computes is declared on the class, as vLLM declares its backends' capabilities; the
start-up verdict (availability.py) compares each layer with it once, never per step.
"""

from __future__ import annotations

import inspect

from vllm.v1.attention.backend import AttentionType

from .. import compat
from .gains import AnchoredRows, GainState


class AnchoredForwardMixin:
    """Put first in the bases of a vLLM AttentionImpl; subclasses supply `anchored_recompute`."""

    # the anchored recompute is plain softmax attention over an unquantised cache, per head
    supports_sliding_window = False
    supports_logits_soft_cap = False
    supports_alibi = False
    supports_sinks = False
    supports_quantized_kv_cache = False

    gain_state: GainState | None = None  # set by the model that owns the layer

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not hasattr(self, "attn_type"):  # FlashInferImpl takes attn_type but never stores it
            given = inspect.signature(super().__init__).bind(*args, **kwargs).arguments
            self.attn_type = given.get("attn_type", AttentionType.DECODER)

    def forward(self, layer, query, key, value, kv_cache, attn_metadata, output,
                output_scale=None, output_block_scale=None):
        output = super().forward(layer, query, key, value, kv_cache, attn_metadata, output,
                                 output_scale, output_block_scale)
        state = self.gain_state
        if state is None or attn_metadata is None or not state.active() or self.attn_type != AttentionType.DECODER:
            return output
        # every backend's layer cache is (logically) [num_blocks, num_kv_heads, block_size, 2 * head_size]
        num_blocks, _, block_size, _ = kv_cache.shape
        rows = state.begin_step(attn_metadata, num_blocks * block_size, block_size)
        if rows.requests:
            self.anchored_recompute(layer, query, kv_cache, rows, state, output)
        return output

    def anchored_recompute(self, layer, query, kv_cache, rows: AnchoredRows, state: GainState, output) -> None:
        """Overwrite the rows of `rows`' anchored requests in `output` with anchored attention."""
        raise NotImplementedError

    def anchored_unsupported(self) -> str | None:
        """What this layer computes that the anchored recompute does not (None: nothing), by
        the class's declared capabilities; read once at start-up."""
        window = getattr(self, "sliding_window", None)
        features = (
            (self.supports_quantized_kv_cache or not compat.is_quantized_kv_cache(self.kv_cache_dtype),
             f"a quantised KV cache (kv_cache_dtype={self.kv_cache_dtype!r})"),
            (self.supports_sliding_window or window in (None, -1, (-1, -1)), "sliding-window attention"),
            (self.supports_logits_soft_cap or not getattr(self, "logits_soft_cap", None), "logits soft-capping"),
            (self.supports_alibi or getattr(self, "alibi_slopes", None) is None, "ALiBi"),
            (self.supports_sinks or getattr(self, "sinks", None) is None, "attention sinks"),
        )
        return next((name for supported, name in features if not supported), None)
