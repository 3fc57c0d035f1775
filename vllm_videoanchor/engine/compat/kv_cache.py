"""vLLM's KV-cache layouts, as the anchored prefill reads them.

The anchored path reads K/V straight out of vLLM's paged cache: the CUDA backends' logical
layout, CPU_ATTN's per-ISA layouts (which vLLM picks per host), and the ops that write them.
"""

from __future__ import annotations

import importlib

import torch

from .versions import since


def cuda_kv_views(kv_cache: torch.Tensor, head_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """K and V as [num_blocks, block_size, num_kv_heads, head_size] strided views of a CUDA
    backend's logical [num_blocks, num_kv_heads, block_size, 2 * head_size] layer cache
    (the same split FLASH_ATTN and TRITON_ATTN make; FLASHINFER receives the same logical
    view and permutes it for its own kernels). The physical layout (NHD or HND) only
    changes the strides, which the kernel reads."""
    key_cache, value_cache = kv_cache.transpose(1, 2).split(head_size, dim=-1)
    return key_cache, value_cache


def layer_kv_layout(layer) -> str | None:
    """The CPU KV-cache layout ("isa") vLLM's builder assigned to an attention layer."""
    return getattr(layer, "isa", None)


def picked_cpu_kv_layout(dtype: torch.dtype, block_size: int, head_size: int, kv_cache_dtype: str) -> str:
    """The CPU KV-cache layout vLLM will pick for these settings on this host."""
    from vllm.v1.attention.backends.cpu_attn import _get_attn_isa

    return _get_attn_isa(dtype, block_size, head_size, kv_cache_dtype)


def engine_kv_layout(vllm_config) -> str | None:
    """The layout of this engine's decoder KV cache on CPU (None off CPU)."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return None
    model_config, cache_config = vllm_config.model_config, vllm_config.cache_config
    try:
        return picked_cpu_kv_layout(model_config.dtype, cache_config.block_size, model_config.get_head_size(),
                             cache_config.cache_dtype)
    except NotImplementedError:  # vLLM itself will refuse this configuration
        return "unsupported"


def cpu_attn_ops():
    """The module holding vLLM's CPU attention ops (cpu_attn_reshape_and_cache, ...):
    vllm._custom_ops until 0.33, vllm._cpu_ops from 0.34."""
    return importlib.import_module("vllm._cpu_ops" if since("0.34") else "vllm._custom_ops")


def is_quantized_kv_cache(kv_cache_dtype: str) -> bool:
    # the one place from 0.33 on (vllm.utils.torch_utils's is gone), and already in 0.32
    from vllm.v1.kv_cache_interface import is_quantized_kv_cache as quantized

    return quantized(kv_cache_dtype)


def engine_kv_cache_dtype(vllm_config) -> str:
    return vllm_config.cache_config.cache_dtype
