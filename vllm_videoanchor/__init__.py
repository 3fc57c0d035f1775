"""VideoAnchor for vLLM: subspace-anchored attention for video and multi-view VLMs.

`register()` is the `vllm.general_plugins` entry point. vLLM calls it in the API server,
the engine core and every worker, possibly more than once per process, so it must be
idempotent and cheap: it registers the anchored model classes by name (lazily: the model
module is imported only when vLLM loads one of them).
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


ANCHORED_CPU_BACKEND = "vllm_videoanchor.engine.attention.AnchoredCPUAttentionBackend"


def register() -> None:
    """vLLM plugin entry point (idempotent): the anchored models replace the stock ones."""
    global _registered
    if _registered:
        return
    from vllm import ModelRegistry
    from vllm.v1.attention.backends.registry import AttentionBackendEnum, register_backend

    for architecture, target in ANCHORED_MODELS.items():
        ModelRegistry.register_model(architecture, target)
    register_backend(AttentionBackendEnum.CPU_ATTN, ANCHORED_CPU_BACKEND)
    _registered = True
