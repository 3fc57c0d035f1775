"""Can this engine anchor, and why not: one verdict at start-up, one check per request.

`engine_verdict` runs once, in the model's `__init__`, from what the engine really built
(an attention override that failed to import makes vLLM fall back to another backend
without a word): each decoder layer's backend class says what anchoring on it supports
(attention/forward.py `AnchoredBackendMixin`). It raises for settings of this process that
can never work (a solver backend that cannot run here), and returns
why this engine cannot anchor, naming the setting and what to do (None: it can). The model
then refuses to start with that reason when the server anchors by default, else records it
in the solve log: the server answers anchored requests 400 with it, and an anchored item
that still reaches the engine is served plain and reported failed.

`request_refusal` is the processor's check per anchored request, before the engine runs:
what it knows from the model config and the host (EVS video pruning, a CPU architecture
whose KV layout cannot be read).
"""

from __future__ import annotations

from ..settings import process_settings
from ..ssc.cupy_admm import check_solver_backend
from . import compat
from .attention import cpu_kv_layout
from .attention.forward import AnchoredBackendMixin, AnchoredForwardMixin
from .option import ANCHOR_KEY

ANCHORED_GPU_BACKENDS = ("FLASH_ATTN", "TRITON_ATTN", "FLASHINFER")



def engine_verdict(vllm_config, model) -> str | None:
    """Why this engine cannot anchor (None when it can); `model` is the constructed model.
    Judged from the backend the decoder layers really got (a CUDA backend run by another
    platform, as in the CPU test environment, is judged as a CUDA backend). An encoder-only
    engine (the encoder instance of the disaggregated mode) solves and hands the gains on
    with its encoder outputs; it runs no attention, so only its settings count."""
    if compat.encoder_only(vllm_config):
        check_process_settings()
        return None
    layers = compat.decoder_attention_layers(model)
    reason = config_refusal(vllm_config) or layers_refusal(layers) or backends_refusal(vllm_config, layers)
    if reason is None:
        check_process_settings()
    return reason


def config_refusal(vllm_config) -> str | None:
    """Engine settings under which anchoring would be silently wrong (plain requests still
    run as in stock vLLM):
    - pipeline parallelism: only the first stage sees the embeddings and so the gains;
    - context parallelism (decode or prefill): each rank holds a shard of the KV cache, and
      the anchored attention reads only this rank's;
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
        size = getattr(parallel, name)
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


def layers_refusal(layers) -> str | None:
    """layers: (name, impl, backend class) of the decoder attention layers. Each must run one
    of our backends, configured for what the anchored recompute computes (the capabilities
    its backend class declares)."""
    if not layers:
        return "no decoder attention layer found"
    for name, impl, backend in layers:
        if not isinstance(impl, AnchoredForwardMixin) or not issubclass(backend, AnchoredBackendMixin):
            return (f"anchored attention is not available on the {backend.get_name()} attention backend (layer "
                    f"{name}); anchored backends: {', '.join(ANCHORED_GPU_BACKENDS)} (choose one with "
                    "--attention-backend)")
        unsupported = backend.anchoring_unsupported(impl)
        if unsupported:
            return f"anchored attention does not support {unsupported} ({backend.get_name()}, layer {name})"
    return None


def backends_refusal(vllm_config, layers) -> str | None:
    """What the layers' backends need of the engine's settings (the CPU backend: a KV layout
    we read back; the CUDA backends: Triton, no FULL CUDA graphs), each backend asked once."""
    for backend in dict.fromkeys(backend for _, _, backend in layers):
        reason = backend.anchoring_refusal(vllm_config)
        if reason:
            return reason
    return None


def check_process_settings() -> None:
    """Settings that can never work here stop the engine at start-up, not in a step."""
    check_solver_backend(process_settings().solver_backend)


def request_refusal(info) -> str | None:
    """Why this engine cannot anchor a request, known in the processor (None when it can);
    what the engine itself found at start-up reaches the server through the solve log."""
    rate = compat.video_pruning_rate(info)
    if rate:
        return (f"{ANCHOR_KEY}: this server prunes video tokens (video_pruning_rate={rate}, EVS), which "
                "anchoring does not support; send the request without `anchor`, or serve with "
                "video_pruning_rate=0")
    layout = compat.is_cpu_platform() and cpu_kv_layout.unreadable_layout_on(compat.host_cpu_architecture())
    if layout:
        return f"{ANCHOR_KEY}: {cpu_kv_layout.unreadable_isa_message(layout)}"
    return None
