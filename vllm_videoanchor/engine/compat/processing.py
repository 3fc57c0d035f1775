"""What the plugin reads of vLLM's multimodal processing info (the processor side).

The families' token layouts follow vLLM's own arithmetic (any-res grids, tiles), so they
ask vLLM's processing info instead of recomputing it.
"""

from __future__ import annotations


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
