"""Every touch of a vLLM internal, in one place (vLLM 0.32 to 0.34).

The plugin builds on vLLM's documented hooks where they exist (model registration, the
processor's `_get_hf_mm_inputs` / `_postprocess_hf_mm_data` / `_get_mm_fields_config`,
`embed_multimodal` / `embed_input_ids`, `register_backend`). What remains (private methods
we override or call, model attributes, attention-metadata fields, KV-cache layouts, the
names we import) is read through the functions of this package and listed in its pin
table, checked against the installed vLLM (`pin_mismatches`, run by the engine tests) and
against a release's wheel without importing it (`python -m vllm_videoanchor.compat_check
0.34.0`), so an upgrade that moves any of them fails in CI instead of misbehaving in
production. Code imports the names below from here, not from the submodules:

    versions.py        the supported releases, the installed one, `Versions` (per-release pins)
    pin_table.py       the pins: names, method signatures, dataclass fields, source text
    pins.py            the table resolved for a release (`pins_for`), checked here (`pin_mismatches`)
    media.py           media decoded with vLLM's loaders (explain)
    processing.py      what the families read of vLLM's processing info
    models.py          what the model mixin reads of vLLM's model classes
    attention.py       the step's attention metadata, the model's decoder attention layers
    kv_cache.py        KV-cache layouts (CUDA views, CPU_ATTN's per-ISA layouts) and their ops
    runner.py          the model runner's choices: CUDA graphs, the encoder instance's runner
    disaggregation.py  the engine's role: encoder-only, decode-only, KV connector
    platforms.py       CPU or CUDA, the host's CPU architecture
"""

from .attention import (
    COMMON_METADATA_ATTR,
    StepMetadata,
    copy_is_prefilling,
    decoder_attention_layers,
    keep_common_metadata,
    step_metadata,
)
from .disaggregation import ec_decode_only, encoder_only, kv_connector
from .kv_cache import (
    cpu_attn_ops,
    cuda_kv_views,
    engine_kv_cache_dtype,
    engine_kv_layout,
    is_quantized_kv_cache,
    layer_kv_layout,
    picked_cpu_kv_layout,
)
from .media import load_image_file, load_video_file
from .models import EVS_POSITION_COLUMNS, deepstack_columns, evs_columns, image_newline, text_hidden_size
from .pin_table import FAMILY_CLASSES, PINNED_FIELDS, PINNED_METHODS, PINNED_NAMES, PINNED_SOURCE
from .pins import Pins, pin_mismatches, pins_for, resolve
from .platforms import host_cpu_architecture, is_cpu_platform, is_cuda_platform
from .processing import architecture, internvl_tokens_per_tile, llava_image_newline_rows, video_pruning_rate
from .runner import encoder_cuda_graphs, encoder_instance_env, full_cuda_graphs
from .versions import (
    SUPPORTED_END,
    SUPPORTED_FIRST,
    SUPPORTED_RANGE,
    TESTED_VERSION,
    Versions,
    installed_version,
    is_supported,
    since,
    version_tuple,
)

__all__ = [
    # versions and pins
    "SUPPORTED_RANGE", "SUPPORTED_FIRST", "SUPPORTED_END", "TESTED_VERSION", "version_tuple", "is_supported",
    "installed_version", "since", "Versions", "Pins", "pins_for", "resolve", "pin_mismatches",
    "PINNED_NAMES", "PINNED_METHODS", "PINNED_FIELDS", "PINNED_SOURCE", "FAMILY_CLASSES",
    # media, processor and model side
    "load_video_file", "load_image_file", "architecture", "video_pruning_rate", "llava_image_newline_rows",
    "internvl_tokens_per_tile", "EVS_POSITION_COLUMNS", "text_hidden_size", "deepstack_columns", "evs_columns",
    "image_newline",
    # attention side
    "StepMetadata", "COMMON_METADATA_ATTR", "step_metadata", "copy_is_prefilling", "keep_common_metadata",
    "decoder_attention_layers", "cuda_kv_views", "layer_kv_layout", "picked_cpu_kv_layout", "engine_kv_layout",
    "cpu_attn_ops", "is_quantized_kv_cache", "engine_kv_cache_dtype",
    # engine configuration and platform
    "encoder_cuda_graphs", "full_cuda_graphs", "encoder_instance_env", "kv_connector", "encoder_only",
    "ec_decode_only", "is_cpu_platform", "is_cuda_platform", "host_cpu_architecture",
]
