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


def config_unavailable_reason(vllm_config) -> str | None:
    """Engine settings under which anchoring would be silently wrong, so it is refused (the
    engine still serves plain requests as stock vLLM does):
    - pipeline parallelism: only the first stage sees the embeddings and so the gains;
      later stages would run plain attention;
    - context parallelism (decode or prefill): each rank holds a shard of the KV cache, and
      the anchored kernel reads only this rank's;
    - encoder CUDA graphs (Model Runner V2, opt-in): a replay replaces the model's
      `embed_multimodal`, so no anchored item would be solved;
    - a KV connector (disaggregated prefill, LMCache, vLLM's CPU KV offload): it fills KV
      blocks from outside the step, where the per-slot gains are never written."""
    parallel = vllm_config.parallel_config
    if parallel.pipeline_parallel_size > 1:
        return (f"anchoring does not support pipeline parallelism (pipeline_parallel_size="
                f"{parallel.pipeline_parallel_size}): later stages never see the gains; use tensor or data "
                "parallelism to anchor")
    for name in ("decode_context_parallel_size", "prefill_context_parallel_size"):
        size = getattr(parallel, name, 1)
        if size > 1:
            return (f"anchoring does not support context parallelism ({name}={size}): the anchored attention "
                    "reads only this rank's share of the KV cache")
    if compat.encoder_cuda_graphs(vllm_config):
        return ("anchoring does not support encoder CUDA graphs (compilation_config.cudagraph_mm_encoder): their "
                "replays skip the model's embed_multimodal, where the anchor is computed")
    connector = compat.kv_connector(vllm_config)
    if connector:
        return (f"anchoring does not support a KV connector or KV offloading (kv_connector={connector!r}): "
                "KV blocks it loads carry no anchor gains")
    return None


def unavailable_reason(vllm_config, model) -> str | None:
    """Why this engine cannot anchor (None when it can); `model` is the constructed model."""
    reason = config_unavailable_reason(vllm_config)
    if reason:
        return reason
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
