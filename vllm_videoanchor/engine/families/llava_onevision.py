"""LLaVA-OneVision: videos are [frames, 3, H, W] per item with one closing newline row;
images are any-res patches whose grid ends each row with a newline row. Newline rows
(equal to the model's `image_newline`) are not visual tokens: they stay out of the solver
(identical rows would represent each other trivially) and keep gain 1."""

from __future__ import annotations

from vllm.model_executor.models.llava_onevision import (
    LlavaOnevisionDummyInputsBuilder,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionMultiModalProcessor,
    LlavaOnevisionProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY

from .. import compat
from ..model import AnchorModelMixin
from ..processor import AnchorProcessingInfoMixin, AnchorProcessorMixin


class LlavaOnevisionLayoutMixin:
    def _visual_items(self, outputs, modality):
        """Videos: tokens = frames x pooled grid (the closing newline row is not a visual
        token). Images: the base image's and the unpadded grid's features, without the
        grid's newline rows (vLLM's own arithmetic)."""
        if modality == "image":
            pixels, sizes = outputs.get("pixel_values", []), outputs.get("image_sizes", [])
            return [(self._image_tokens(*(int(x) for x in size)), [size, p]) for size, p in zip(sizes, pixels)]
        items = []
        for video in outputs.get("pixel_values_videos", []):
            frames, _, height, width = video.shape
            tokens = self.info.get_num_video_tokens(image_width=width, image_height=height, num_frames=frames)
            items.append((tokens - 1, [video]))
        return items

    def _image_tokens(self, height: int, width: int) -> int:
        newlines = compat.llava_image_newline_rows(self.info, height, width)
        return self.info.get_num_image_tokens(image_width=width, image_height=height) - newlines

    def _group_keys(self):
        return "pixel_values", "image_sizes"


class AnchoredLlavaOnevisionProcessingInfo(AnchorProcessingInfoMixin, LlavaOnevisionProcessingInfo):
    pass


class AnchoredLlavaOnevisionMultiModalProcessor(LlavaOnevisionLayoutMixin, AnchorProcessorMixin,
                                                LlavaOnevisionMultiModalProcessor):
    pass


@MULTIMODAL_REGISTRY.register_processor(
    AnchoredLlavaOnevisionMultiModalProcessor,
    info=AnchoredLlavaOnevisionProcessingInfo,
    dummy_inputs=LlavaOnevisionDummyInputsBuilder,
)
class AnchoredLlavaOnevisionForConditionalGeneration(AnchorModelMixin, LlavaOnevisionForConditionalGeneration):
    def _solver_rows(self, modality, embedding):
        """Every row but the image_newline rows (one closes each video, one ends each row
        of an image's any-res grid)."""
        newline = compat.image_newline(self).to(embedding.dtype)
        return (self._layout.tokens(embedding) != newline).any(dim=-1)
