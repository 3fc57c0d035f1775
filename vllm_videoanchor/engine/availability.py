"""Whether this engine can anchor at all, decided once at start-up from what it really got.

On CPU: the KV layout vLLM picked must be one we read back (cpu_kv_layout.py). On GPUs:
every decoder attention layer must run one of our backends (an override that failed to
import makes vLLM fall back to another backend without a word), with attention the kernel
computes (no quantised KV cache, sliding window, soft-capping, ALiBi or sinks), Triton
must be installed, and the engine must not replay FULL CUDA graphs (the anchored path runs
in Python inside the attention's forward). The reason, when there is one, names the
backend or setting and what to do; model.py refuses to start with it when the server
anchors by default, otherwise records it, and the server answers anchored requests 400.
"""

from __future__ import annotations

import json

from . import compat, cpu_kv_layout

ANCHORED_GPU_BACKENDS = ("FLASH_ATTN", "TRITON_ATTN", "FLASHINFER")

# the compilation config anchoring needs on CUDA (FULL graph replays skip the anchored path)
PIECEWISE_GRAPHS = {"cudagraph_mode": "PIECEWISE"}
FULL_GRAPHS_ADVICE = (f"serve with --compilation-config '{json.dumps(PIECEWISE_GRAPHS)}' "
                      "(vllm-videoanchor serve sets it on CUDA)")


def unavailable_reason(vllm_config, model) -> str | None:
    """Why this engine cannot anchor (None when it can); `model` is the constructed model."""
    if compat.is_cpu_platform():
        return cpu_kv_layout.unavailable_reason(compat.engine_kv_layout(vllm_config),
                                                compat.engine_kv_cache_dtype(vllm_config))
    return gpu_unavailable_reason(compat.decoder_attention_layers(model), compat.full_cuda_graphs(vllm_config))


def gpu_unavailable_reason(layers, full_cuda_graphs: bool) -> str | None:
    """layers: (name, impl, backend name) of the decoder attention layers."""
    from ..kernels.anchored_prefill import triton_available
    from .gpu_attention import AnchoredImplMixin

    if not layers:
        return "no decoder attention layer found"
    for name, impl, backend in layers:
        if not isinstance(impl, AnchoredImplMixin):
            return (f"anchored attention is not available on the {backend} attention backend (layer {name}); "
                    f"anchored backends: {', '.join(ANCHORED_GPU_BACKENDS)} (choose one with --attention-backend)")
        unsupported = impl.anchored_unsupported()
        if unsupported:
            return f"anchored attention does not support {unsupported} ({backend}, layer {name})"
    if not triton_available():
        return "anchored attention on GPUs needs Triton, which is not installed"
    if full_cuda_graphs:
        return ("this engine replays FULL CUDA graphs, which skip the anchored attention (it runs in Python): "
                + FULL_GRAPHS_ADVICE)
    return None
