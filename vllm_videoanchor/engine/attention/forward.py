"""The forward every anchored attention backend shares (cpu.py, cuda.py, flashinfer.py):
vLLM's own kernel for every row, then, only when some anchored request has run on this
engine, the step's gain write and the backend's recompute of the prefilling requests.
Before that, a step costs one flag check.

The step's gains live on the engine's own objects: the model creates one `GainState` and
hands it to each of its decoder attention layers (`gain_state`); an impl without one (a
layer of a model that is not ours) is stock attention. What the anchored recompute
computes, and what an engine needs to anchor, are declared as classmethods on the backend
class (`AnchoredBackendMixin`), where vLLM declares its backends' capabilities; the start-up
verdict (availability.py) asks each layer's backend once, never per step.
"""

from __future__ import annotations

import inspect
import json

from vllm.v1.attention.backend import AttentionType

from .. import compat
from .gains import AnchoredRows, GainState

# the compilation config anchoring needs on CUDA (FULL graph replays skip the anchored path)
PIECEWISE_GRAPHS = {"cudagraph_mode": "PIECEWISE"}
FULL_GRAPHS_ADVICE = (f"serve with --compilation-config '{json.dumps(PIECEWISE_GRAPHS)}' "
                      "(vllm-videoanchor serve sets it on CUDA)")


class AnchoredBackendMixin:
    """Put first in the bases of a vLLM AttentionBackend: what anchoring on this backend
    supports, as classmethods (vLLM's own shape for capabilities). vLLM's capability
    classmethods (`supports_sink`, ...) stay the stock backend's, so a model that uses such a
    feature still gets this backend and serves plain requests exactly as stock vLLM does;
    only anchoring is refused, naming the feature."""

    @classmethod
    def anchoring_supports_sliding_window(cls) -> bool:
        return False  # the anchored recompute is plain causal softmax attention over the whole context

    @classmethod
    def anchoring_supports_logits_soft_cap(cls) -> bool:
        return False

    @classmethod
    def anchoring_supports_alibi(cls) -> bool:
        return False

    @classmethod
    def anchoring_supports_sinks(cls) -> bool:
        return False

    @classmethod
    def anchoring_supports_quantized_kv_cache(cls) -> bool:
        return False  # the recompute reads K/V as stored, without scales

    @classmethod
    def anchoring_unsupported(cls, impl) -> str | None:
        """What this layer computes that the anchored recompute does not (None: nothing), by
        the layer's settings as vLLM's impls store them; read once at start-up."""
        window = getattr(impl, "sliding_window", None)
        features = (
            (cls.anchoring_supports_quantized_kv_cache() or not compat.is_quantized_kv_cache(impl.kv_cache_dtype),
             f"a quantised KV cache (kv_cache_dtype={impl.kv_cache_dtype!r})"),
            (cls.anchoring_supports_sliding_window() or window in (None, -1, (-1, -1)),
             f"sliding-window attention (sliding_window={window!r})"),
            (cls.anchoring_supports_logits_soft_cap() or not getattr(impl, "logits_soft_cap", None),
             "logits soft-capping"),
            (cls.anchoring_supports_alibi() or getattr(impl, "alibi_slopes", None) is None, "ALiBi"),
            (cls.anchoring_supports_sinks() or getattr(impl, "sinks", None) is None, "attention sinks"),
        )
        return next((name for supported, name in features if not supported), None)

    @classmethod
    def anchoring_refusal(cls, vllm_config) -> str | None:
        """Why an engine with this backend's layers cannot anchor, from its settings (None: it
        can); the backend modules say what their recompute needs."""
        return None


class AnchoredForwardMixin:
    """Put first in the bases of a vLLM AttentionImpl; subclasses supply `anchored_recompute`."""

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
