"""Qwen3-VL: the Qwen-VL patch layout; items carry deepstack columns after the LM input
(packed.py keeps them out of the solver), and the timestamp tokens inside a video's
placeholder are text, not visual rows."""

from __future__ import annotations

from vllm.model_executor.models.qwen3_vl import (
    Qwen3VLDummyInputsBuilder,
    Qwen3VLForConditionalGeneration,
    Qwen3VLMultiModalProcessor,
    Qwen3VLProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY

from ..model import AnchorModelMixin
from ..processor import AnchorProcessingInfoMixin, AnchorProcessorMixin
from .qwen_vl import QwenVLLayoutMixin


class AnchoredQwen3VLProcessingInfo(AnchorProcessingInfoMixin, Qwen3VLProcessingInfo):
    pass


class AnchoredQwen3VLMultiModalProcessor(QwenVLLayoutMixin, AnchorProcessorMixin, Qwen3VLMultiModalProcessor):
    pass


@MULTIMODAL_REGISTRY.register_processor(
    AnchoredQwen3VLMultiModalProcessor,
    info=AnchoredQwen3VLProcessingInfo,
    dummy_inputs=Qwen3VLDummyInputsBuilder,
)
class AnchoredQwen3VLForConditionalGeneration(AnchorModelMixin, Qwen3VLForConditionalGeneration):
    pass
