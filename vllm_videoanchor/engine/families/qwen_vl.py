"""Qwen2-VL and Qwen2.5-VL: flattened patches, `{image,video}_grid_thw` rows per item."""

from __future__ import annotations

import torch
from vllm.model_executor.models.qwen2_5_vl import (
    Qwen2_5_VLDummyInputsBuilder,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLMultiModalProcessor,
    Qwen2_5_VLProcessingInfo,
)
from vllm.model_executor.models.qwen2_vl import (
    Qwen2VLDummyInputsBuilder,
    Qwen2VLForConditionalGeneration,
    Qwen2VLMultiModalProcessor,
    Qwen2VLProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY

from ..model import AnchorModelMixin
from ..processor import AnchorProcessingInfoMixin, AnchorProcessorMixin

PIXEL_KEYS = {"video": "pixel_values_videos", "image": "pixel_values"}
GRID_KEYS = {"video": "video_grid_thw", "image": "image_grid_thw"}


class QwenVLLayoutMixin:
    """Items are flattened patches, `grid_thw` rows per item, spatial_merge_size**2 patches
    per visual token (Qwen2-VL, Qwen2.5-VL, Qwen3-VL)."""

    def _visual_items(self, outputs, modality):
        if GRID_KEYS[modality] not in outputs:
            return []
        merge = self.info.get_hf_config().vision_config.spatial_merge_size
        grids = outputs[GRID_KEYS[modality]]
        rows = [int(grid.prod()) for grid in grids]
        pixels = outputs.get(PIXEL_KEYS[modality])
        if isinstance(pixels, (list, tuple)):
            per_item = list(pixels)
        elif pixels is not None and pixels.shape[0] == sum(rows):
            per_item = list(torch.split(pixels, rows))
        else:  # another layout: identify each item by all of them
            per_item = [pixels] * len(grids) if pixels is not None else [None] * len(grids)
        return [(n // merge**2, [grid] + ([p] if p is not None else [])) for n, grid, p in zip(rows, grids, per_item)]

    def _group_keys(self):
        return PIXEL_KEYS["image"], GRID_KEYS["image"]


class AnchoredQwen2_5_VLProcessingInfo(AnchorProcessingInfoMixin, Qwen2_5_VLProcessingInfo):
    pass


class AnchoredQwen2_5_VLMultiModalProcessor(QwenVLLayoutMixin, AnchorProcessorMixin, Qwen2_5_VLMultiModalProcessor):
    pass


@MULTIMODAL_REGISTRY.register_processor(
    AnchoredQwen2_5_VLMultiModalProcessor,
    info=AnchoredQwen2_5_VLProcessingInfo,
    dummy_inputs=Qwen2_5_VLDummyInputsBuilder,
)
class AnchoredQwen2_5_VLForConditionalGeneration(AnchorModelMixin, Qwen2_5_VLForConditionalGeneration):
    pass


class AnchoredQwen2VLProcessingInfo(AnchorProcessingInfoMixin, Qwen2VLProcessingInfo):
    pass


class AnchoredQwen2VLMultiModalProcessor(QwenVLLayoutMixin, AnchorProcessorMixin, Qwen2VLMultiModalProcessor):
    pass


@MULTIMODAL_REGISTRY.register_processor(
    AnchoredQwen2VLMultiModalProcessor,
    info=AnchoredQwen2VLProcessingInfo,
    dummy_inputs=Qwen2VLDummyInputsBuilder,
)
class AnchoredQwen2VLForConditionalGeneration(AnchorModelMixin, Qwen2VLForConditionalGeneration):
    pass
