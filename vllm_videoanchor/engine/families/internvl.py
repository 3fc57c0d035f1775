"""InternVL, in both formats: items are tiles (images) or frames (videos) of
`image_seq_length` tokens each, their pixels stacked and split by `{modality}_num_patches`.
Inside a video's placeholder the "FrameN: <img>" / "</img>" tokens are text, so an item's
rows are its visual tokens only."""

from __future__ import annotations

import torch
from vllm.model_executor.models.interns1 import (
    InternS1DummyInputsBuilder,
    InternS1ForConditionalGeneration,
    InternS1MultiModalProcessor,
    InternS1ProcessingInfo,
)
from vllm.model_executor.models.internvl import (
    InternVLChatModel,
    InternVLDummyInputsBuilder,
    InternVLMultiModalProcessor,
    InternVLProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY

from .. import compat
from ..joint import JOINT_MODALITY
from ..model import AnchorModelMixin
from ..processor import AnchorProcessingInfoMixin, AnchorProcessorMixin


class InternVLLayoutMixin:
    """PIXELS: the pixel keys of the format (Hugging Face or original)."""

    PIXELS = {"image": "pixel_values", "video": "pixel_values_videos"}

    def _visual_items(self, outputs, modality):
        counts, pixels = outputs.get(f"{modality}_num_patches"), outputs.get(self.PIXELS[modality])
        if counts is None or pixels is None:
            return []
        counts = [int(n) for n in counts]
        per_tile = compat.internvl_tokens_per_tile(self.info)
        per_item = list(pixels) if isinstance(pixels, (list, tuple)) else list(torch.split(pixels, counts))
        return [(n * per_tile, [p]) for n, p in zip(counts, per_item)]

    def _group_keys(self):
        return self.PIXELS[JOINT_MODALITY], "image_num_patches"


class AnchoredInternVLProcessingInfo(AnchorProcessingInfoMixin, InternS1ProcessingInfo):
    pass


class AnchoredInternVLMultiModalProcessor(InternVLLayoutMixin, AnchorProcessorMixin, InternS1MultiModalProcessor):
    pass


@MULTIMODAL_REGISTRY.register_processor(
    AnchoredInternVLMultiModalProcessor,
    info=AnchoredInternVLProcessingInfo,
    dummy_inputs=InternS1DummyInputsBuilder,
)
class AnchoredInternVLForConditionalGeneration(AnchorModelMixin, InternS1ForConditionalGeneration):
    """InternVL in Hugging Face format (vLLM serves it with its InternS1 class)."""

    GROUP_SHARED_KEYS = ("image_token_id",)


class AnchoredInternVLChatProcessingInfo(AnchorProcessingInfoMixin, InternVLProcessingInfo):
    pass


class AnchoredInternVLChatMultiModalProcessor(InternVLLayoutMixin, AnchorProcessorMixin, InternVLMultiModalProcessor):
    PIXELS = {"image": "pixel_values_flat", "video": "pixel_values_flat_video"}


@MULTIMODAL_REGISTRY.register_processor(
    AnchoredInternVLChatMultiModalProcessor,
    info=AnchoredInternVLChatProcessingInfo,
    dummy_inputs=InternVLDummyInputsBuilder,
)
class AnchoredInternVLChatModel(AnchorModelMixin, InternVLChatModel):
    """InternVL in its original format (InternVL2 / 2.5 / 3 checkpoints: LM varies)."""

    GROUP_SHARED_KEYS = ("image_token_id",)
