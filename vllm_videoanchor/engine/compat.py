"""Every touch of a vLLM internal, in one place (pinned to vLLM 0.32.0).

The plugin builds on vLLM's documented hooks where they exist (model registration, the
processor's `_get_hf_mm_inputs` / `_postprocess_hf_mm_data` / `_get_mm_fields_config`,
`embed_multimodal` / `embed_input_ids`, `register_backend`). What remains (private methods
we override or call, model attributes, attention-metadata fields, KV-cache layouts) is
read through the functions below and listed in PINNED_METHODS / PINNED_FIELDS /
PINNED_SOURCE, which tests/test_engine_compat.py checks against the installed vLLM, so an
upgrade that moves any of them fails in CI instead of misbehaving in production.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import torch

VLLM_VERSION = "0.32.0"

# "module:Class.method" -> parameter names, for the private methods the mixins override
# or call (a renamed parameter or method breaks the override silently otherwise)
PINNED_METHODS: dict[str, tuple[str, ...]] = {
    "vllm.multimodal.processing.processor:BaseMultiModalProcessor.apply": ("self", "inputs", "timing_ctx"),
    "vllm.multimodal.processing.processor:BaseMultiModalProcessor._get_hf_mm_inputs":
        ("self", "mm_items", "hf_kwargs"),
    "vllm.multimodal.processing.processor:BaseMultiModalProcessor._postprocess_hf_mm_data":
        ("self", "mm_inputs", "hf_processor_mm_kwargs", "processed_data"),
    "vllm.multimodal.processing.processor:BaseMultiModalProcessor._get_mm_fields_config":
        ("self", "hf_inputs", "hf_processor_mm_kwargs"),
    "vllm.multimodal.processing.processor:BaseMultiModalProcessor._get_mm_hashes": ("self", "inputs"),
    "vllm.multimodal.processing.processor:BaseMultiModalProcessor._get_cache_missing_items":
        ("self", "cache", "mm_data_items", "mm_hashes"),
    "vllm.model_executor.models.llava_onevision:LlavaOnevisionProcessingInfo._get_num_unpadded_features":
        ("self", "original_height", "original_width", "npatches", "num_patch_height", "num_patch_width"),
    "vllm.v1.attention.backends.cpu_attn:CPUAttentionBackendImpl.forward":
        ("self", "layer", "query", "key", "value", "kv_cache", "attn_metadata", "output", "output_scale",
         "output_block_scale"),
    "vllm.v1.attention.backends.cpu_attn:CPUAttentionMetadataBuilder.build":
        ("self", "common_prefix_len", "common_attn_metadata", "fast_build"),
    "vllm.v1.attention.backends.cpu_attn:_get_attn_isa": ("dtype", "block_size", "head_size", "kv_cache_dtype"),
    "vllm.v1.attention.backends.flash_attn:FlashAttentionImpl.forward":
        ("self", "layer", "query", "key", "value", "kv_cache", "attn_metadata", "output", "output_scale",
         "output_block_scale"),
    "vllm.v1.attention.backends.triton_attn:TritonAttentionImpl.forward":
        ("self", "layer", "query", "key", "value", "kv_cache", "attn_metadata", "output", "output_scale",
         "output_block_scale"),
    "vllm.v1.attention.backends.flash_attn:FlashAttentionMetadataBuilder.build":
        ("self", "common_prefix_len", "common_attn_metadata", "fast_build"),
    "vllm.v1.attention.backends.triton_attn:TritonAttentionMetadataBuilder.build":
        ("self", "common_prefix_len", "common_attn_metadata", "fast_build"),
    "vllm.config.compilation:CUDAGraphMode.has_full_cudagraphs": ("self",),
    "vllm.utils.torch_utils:is_quantized_kv_cache": ("kv_cache_dtype",),
    # explain decodes media with the server's loaders
    "vllm.multimodal.media.video:VideoMediaIO.__init__": ("self", "image_io", "num_frames", "kwargs"),
    "vllm.multimodal.media.video:VideoMediaIO.load_file": ("self", "filepath"),
    "vllm.multimodal.media.image:ImageMediaIO.load_file": ("self", "filepath"),
    "vllm.multimodal.media.base:MediaWithBytes": ("media", "original_bytes", "io_config"),
    "vllm.multimodal.video:get_video_loader_backend_for_processor": ("video_processor",),
    "vllm.transformers_utils.processor:get_video_processor_cls_name_from_config": ("processor_name", "revision"),
}

# "module:Class" -> dataclass fields read (or, for ProcessorInputs, replaced)
PINNED_FIELDS: dict[str, tuple[str, ...]] = {
    "vllm.v1.attention.backends.cpu_attn:CPUAttentionMetadata":
        ("num_actual_tokens", "max_query_len", "max_seq_len", "query_start_loc", "seq_lens", "block_table",
         "slot_mapping"),
    "vllm.v1.attention.backend:CommonAttentionMetadata":
        ("is_prefilling", "max_query_len", "max_seq_len", "query_start_loc", "query_start_loc_cpu", "seq_lens",
         "block_table_tensor"),
    "vllm.v1.attention.backends.flash_attn:FlashAttentionMetadata": ("num_actual_tokens", "slot_mapping"),
    "vllm.v1.attention.backends.triton_attn:TritonAttentionMetadata": ("num_actual_tokens", "slot_mapping"),
    "vllm.multimodal.processing.processor:ProcessorInputs": ("hf_processor_mm_kwargs",),
}

# "module:Class.method" -> text its source must contain (model attributes we read)
PINNED_SOURCE: dict[str, tuple[str, ...]] = {
    "vllm.model_executor.models.qwen3_vl:Qwen3VLForConditionalGeneration.__init__":
        ("self.visual_dim", "self.multiscale_dim", "self.use_deepstack"),
    "vllm.model_executor.models.llava_onevision:LlavaOnevisionForConditionalGeneration.__init__":
        ("self.image_newline",),
    "vllm.model_executor.models.qwen2_5_vl:Qwen2_5_VLForConditionalGeneration._postprocess_video_embeds_evs":
        ("torch.cat",),
    "vllm.v1.attention.backends.cpu_attn:CPUAttentionMetadataBuilder._set_isa_to_layers": ("layer.isa",),
    # what the GPU kernel reads: the logical per-layer cache and its split into K and V
    "vllm.v1.attention.backends.flash_attn:FlashAttentionImpl.forward":
        ("kv_cache.transpose(1, 2).split(self.head_size, dim=-1)",),
    "vllm.v1.attention.backends.triton_attn:TritonAttentionImpl.forward": ("kv_cache.transpose(1, 2)",),
    "vllm.model_executor.layers.attention.attention:Attention.__init__": ("self.impl", "self.attn_backend"),
    "vllm.config.ec_transfer:ECTransferConfig": ("def is_ec_consumer", "def is_ec_producer"),
    "vllm.config.vllm:VllmConfig": ("ec_transfer_config",),
    "vllm.v1.attention.backends.flash_attn:FlashAttentionImpl.__init__":
        ("self.sliding_window", "self.logits_soft_cap", "self.alibi_slopes", "self.kv_cache_dtype"),
    "vllm.v1.attention.backends.triton_attn:TritonAttentionImpl.__init__":
        ("self.sliding_window", "self.logits_soft_cap", "self.alibi_slopes", "self.kv_cache_dtype"),
}

# Columns EVS (video pruning) appends to image and video embeddings: M-RoPE positions
# (qwen2_5_vl.py, _postprocess_*_embeds_evs), stripped again by the GPU runner.
EVS_POSITION_COLUMNS = 4


def resolve(path: str):
    """The object named "module:Attr.attr"."""
    module, _, qualname = path.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def pin_mismatches() -> list[str]:
    """What in the installed vLLM differs from the pins (empty when all hold)."""
    problems = []
    for path, expected in PINNED_METHODS.items():
        try:
            found = tuple(inspect.signature(resolve(path)).parameters)
        except (ImportError, AttributeError) as exc:
            problems.append(f"{path}: missing ({exc})")
            continue
        if found != expected:
            problems.append(f"{path}: parameters {found}, pinned {expected}")
    for path, names in PINNED_FIELDS.items():
        try:
            fields = {f.name for f in dataclasses.fields(resolve(path))}
        except (ImportError, AttributeError, TypeError) as exc:
            problems.append(f"{path}: missing ({exc})")
            continue
        problems += [f"{path}: no field {name!r}" for name in names if name not in fields]
    for path, snippets in PINNED_SOURCE.items():
        try:
            source = inspect.getsource(resolve(path))
        except (ImportError, AttributeError, OSError, TypeError) as exc:
            problems.append(f"{path}: missing ({exc})")
            continue
        problems += [f"{path}: no longer mentions {snippet!r}" for snippet in snippets if snippet not in source]
    return problems


# --- media, as the server decodes it ---------------------------------------------------


def load_video_file(path, media_io_kwargs: dict | None = None, model_dir=None):
    """(frames, metadata) of a video file, decoded and sampled as the server's media connector
    does: with the server's `--media-io-kwargs` video settings, and the loader vLLM registers
    for the model's video processor class (e.g. Qwen2VLVideoProcessor's samples by fps)."""
    from pathlib import Path

    from vllm.multimodal.media.image import ImageMediaIO
    from vllm.multimodal.media.video import VideoMediaIO
    from vllm.multimodal.video import get_video_loader_backend_for_processor
    from vllm.transformers_utils.processor import get_video_processor_cls_name_from_config

    kwargs = dict(media_io_kwargs or {})
    video_processor = get_video_processor_cls_name_from_config(str(model_dir)) if model_dir else None
    if "video_backend" not in kwargs and (backend := get_video_loader_backend_for_processor(video_processor)):
        kwargs["video_backend"] = backend
    return VideoMediaIO(ImageMediaIO(), **kwargs).load_file(Path(path)).media


def load_image_file(path, media_io_kwargs: dict | None = None):
    """A PIL image (RGB) as vLLM's image loader decodes it."""
    from pathlib import Path

    from vllm.multimodal.media.image import ImageMediaIO

    return ImageMediaIO(**(media_io_kwargs or {})).load_file(Path(path)).media


# --- processor side -------------------------------------------------------------------

def architecture(info) -> str:
    """The architecture vLLM resolved for the served model (keys MODEL_DEFAULTS)."""
    return info.ctx.model_config.architecture


def video_pruning_rate(info) -> float:
    """EVS video pruning rate of the engine (0 when off)."""
    spec = info.ctx.get_mm_config().get_video_pruning_spec()
    return spec[1] if spec else 0.0


def llava_image_newline_rows(info, height: int, width: int) -> int:
    """Newline rows of a LLaVA-OneVision image's any-res grid (vLLM's own arithmetic)."""
    from vllm.model_executor.models.llava_onevision import get_anyres_image_grid_shape

    config, vision = info.get_hf_config(), info.get_vision_encoder_info()
    rows, cols = get_anyres_image_grid_shape(image_size=(height, width), grid_pinpoints=config.image_grid_pinpoints,
                                             patch_size=vision.get_image_size())
    _, newlines = info._get_num_unpadded_features(original_height=height, original_width=width,
                                                  npatches=vision.get_patch_grid_length(),
                                                  num_patch_height=rows, num_patch_width=cols)
    return newlines


def internvl_tokens_per_tile(info) -> int:
    return info.get_hf_processor().image_seq_length


# --- model side -----------------------------------------------------------------------

def text_hidden_size(model) -> int:
    return model.config.get_text_config().hidden_size


def deepstack_columns(model) -> int:
    """Qwen3-VL's deepstack features ride after the LM input in each item's embedding."""
    return model.multiscale_dim if getattr(model, "use_deepstack", False) else 0


def evs_columns(model) -> int:
    """Position columns EVS appends to each item's embedding (0 when pruning is off)."""
    return EVS_POSITION_COLUMNS if getattr(model, "is_multimodal_pruning_enabled", False) else 0


def image_newline(model) -> torch.Tensor:
    return model.image_newline


# --- attention side -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class StepMetadata:
    """The attention-metadata fields the anchored path reads (CPU_ATTN's names), with the
    host copies it needs to decide without a device-to-host sync."""

    num_actual_tokens: int
    max_query_len: int
    max_seq_len: int
    slot_mapping: torch.Tensor
    query_start_loc: torch.Tensor
    query_start_loc_cpu: torch.Tensor
    seq_lens: torch.Tensor
    block_table: torch.Tensor
    is_prefilling: torch.Tensor | None


# the attribute under which the CUDA builders leave the step's CommonAttentionMetadata
COMMON_METADATA_ATTR = "videoanchor_common"


def step_metadata(metadata) -> StepMetadata:
    """CPU_ATTN's metadata holds everything on the host; the CUDA backends' metadata carries
    the CommonAttentionMetadata it was built from (FlashInfer's has no block table, seq
    lens or query starts of its own), with host copies of the query starts."""
    common = getattr(metadata, COMMON_METADATA_ATTR, None)
    if common is None:
        return StepMetadata(metadata.num_actual_tokens, metadata.max_query_len, metadata.max_seq_len,
                            metadata.slot_mapping, metadata.query_start_loc, metadata.query_start_loc,
                            metadata.seq_lens, metadata.block_table, getattr(metadata, "is_prefilling", None))
    return StepMetadata(metadata.num_actual_tokens, common.max_query_len, common.max_seq_len,
                        metadata.slot_mapping, common.query_start_loc, common.query_start_loc_cpu,
                        common.seq_lens, common.block_table_tensor, common.is_prefilling)


def copy_is_prefilling(metadata, common_attn_metadata) -> None:
    """Builders hand `is_prefilling` (a CPU bool per request) on to the impl."""
    metadata.is_prefilling = common_attn_metadata.is_prefilling


def keep_common_metadata(metadata, common_attn_metadata) -> None:
    """CUDA builders keep the step's CommonAttentionMetadata on their metadata (a reference:
    nothing is copied or computed for plain steps)."""
    setattr(metadata, COMMON_METADATA_ATTR, common_attn_metadata)


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


def is_quantized_kv_cache(kv_cache_dtype: str) -> bool:
    from vllm.utils.torch_utils import is_quantized_kv_cache as quantized

    return quantized(kv_cache_dtype)


def decoder_attention_layers(model) -> list[tuple[str, object, str]]:
    """(name, impl, backend name) of every decoder self-attention layer of a constructed
    model (vLLM's Attention layers carry `impl` and `attn_backend`)."""
    from vllm.v1.attention.backend import AttentionType

    layers = []
    for name, module in model.named_modules():
        impl, backend = getattr(module, "impl", None), getattr(module, "attn_backend", None)
        # the layer's type, not the impl's: FLASHINFER's impl never stores it
        if impl is not None and backend is not None and getattr(module, "attn_type", None) == AttentionType.DECODER:
            layers.append((name, impl, backend.get_name()))
    return layers


def kv_connector(vllm_config) -> str | None:
    """The KV connector of this engine (vLLM turns --kv-offloading-size into one), or None."""
    config = vllm_config.kv_transfer_config
    return (config.kv_connector or "unnamed") if config is not None else None


def full_cuda_graphs(vllm_config) -> bool:
    """Whether the engine replays FULL CUDA graphs (steps in which no Python runs)."""
    mode = vllm_config.compilation_config.cudagraph_mode
    return mode is not None and mode.has_full_cudagraphs()


def ec_decode_only(vllm_config) -> bool:
    """Whether this engine is the prefill/decode side of vLLM's encoder disaggregation (an
    EC consumer that does not encode for others): its anchored items arrive encoded and
    solved through the EC connector."""
    config = vllm_config.ec_transfer_config
    return config is not None and config.is_ec_consumer and not config.is_ec_producer


def is_cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def is_cuda_platform() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cuda()


def host_cpu_architecture() -> str:
    """This host's CpuArchEnum name (X86, ARM, ...)."""
    from vllm.platforms import current_platform

    return current_platform.get_cpu_architecture().name


def engine_kv_cache_dtype(vllm_config) -> str:
    return vllm_config.cache_config.cache_dtype
