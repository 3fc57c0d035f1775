"""VideoAnchor for vLLM: subspace-anchored attention for video and multi-view VLMs.

`register()` is the `vllm.general_plugins` entry point. vLLM calls it in the API server,
the engine core and every worker, possibly more than once per process, so it must be
idempotent and cheap: it registers the anchored model classes and attention backends by
name (lazily: a module is imported only when vLLM loads that model or picks that backend).
"""

__version__ = "0.1.0"

_registered = False

# architecture -> "module:class" (kept here so that register() imports no vLLM model code)
_FAMILIES = "vllm_videoanchor.engine.families"
ANCHORED_MODELS = {
    "Qwen2_5_VLForConditionalGeneration": f"{_FAMILIES}.qwen_vl:AnchoredQwen2_5_VLForConditionalGeneration",
    "Qwen2VLForConditionalGeneration": f"{_FAMILIES}.qwen_vl:AnchoredQwen2VLForConditionalGeneration",
    "Qwen3VLForConditionalGeneration": f"{_FAMILIES}.qwen3_vl:AnchoredQwen3VLForConditionalGeneration",
    "LlavaOnevisionForConditionalGeneration":
        f"{_FAMILIES}.llava_onevision:AnchoredLlavaOnevisionForConditionalGeneration",
    "InternVLForConditionalGeneration": f"{_FAMILIES}.internvl:AnchoredInternVLForConditionalGeneration",
    "InternVLChatModel": f"{_FAMILIES}.internvl:AnchoredInternVLChatModel",
}


# attention backend -> our subclass (same name; vLLM imports it only when it picks that backend)
ANCHORED_BACKENDS = {
    "CPU_ATTN": "vllm_videoanchor.engine.attention.cpu.AnchoredCPUAttentionBackend",
    "FLASH_ATTN": "vllm_videoanchor.engine.attention.cuda.AnchoredFlashAttentionBackend",
    "TRITON_ATTN": "vllm_videoanchor.engine.attention.cuda.AnchoredTritonAttentionBackend",
    "FLASHINFER": "vllm_videoanchor.engine.attention.flashinfer.AnchoredFlashInferBackend",
}


def register() -> None:
    """vLLM plugin entry point (idempotent): the anchored models replace the stock ones."""
    global _registered
    if _registered:
        return
    from vllm import ModelRegistry
    from vllm.v1.attention.backends.registry import AttentionBackendEnum, register_backend

    for architecture, target in ANCHORED_MODELS.items():
        ModelRegistry.register_model(architecture, target)
    for backend, target in ANCHORED_BACKENDS.items():
        register_backend(AttentionBackendEnum[backend], target)
    _registered = True
