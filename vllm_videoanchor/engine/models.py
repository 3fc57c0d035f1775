"""Anchored subclasses of vLLM's multimodal models: one mixin per role, one line per model.

The processor takes `anchor` out of the request's mm_processor_kwargs before any Hugging
Face call (where it would be an unknown kwarg, and `get_hf_processor` is cached on its
kwargs), validates it, and attaches it to every item as a field, so that it is part of the
item's data and of the multimodal hash (the kwargs are hashed as the request sent them):
anchored and plain requests on the same media never share encoder-cache entries or KV
blocks. A new model is a small subclass of its vLLM class with these mixins.
"""

from __future__ import annotations

from collections.abc import Mapping

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
from vllm.multimodal.inputs import MultiModalFieldConfig

from .option import ANCHOR_KEY, encode, split_anchor_option

# per-item field carrying the encoded option, per modality, and the key giving the item count
ITEM_FIELDS = {"video": ("video_anchor", "video_grid_thw"), "image": ("image_anchor", "image_grid_thw")}


class AnchorProcessingInfoMixin:
    """Keeps `anchor` away from the Hugging Face processor."""

    def get_hf_processor(self, **kwargs: object):
        kwargs.pop(ANCHOR_KEY, None)
        return super().get_hf_processor(**kwargs)


class AnchorProcessorMixin:
    """Validates the option, strips it, and attaches it to every item."""

    def _call_hf_processor(self, hf_data: Mapping[str, object], hf_kwargs: Mapping[str, object]):
        params, rest = split_anchor_option(hf_kwargs)
        if params is not None:
            raise ValueError(
                f"{ANCHOR_KEY}: anchored attention is not available in this version of "
                "vllm-videoanchor yet (the option is validated and carried, not applied)"
            )
        outputs = super()._call_hf_processor(hf_data, rest)
        vector = encode(params)
        for field, count_key in ITEM_FIELDS.values():
            if count_key in outputs:
                outputs[field] = vector.expand(len(outputs[count_key]), -1).clone()
        return outputs

    def _get_mm_fields_config(self, hf_inputs, hf_processor_mm_kwargs):
        config = dict(super()._get_mm_fields_config(hf_inputs, hf_processor_mm_kwargs))
        for modality, (field, _) in ITEM_FIELDS.items():
            config[field] = MultiModalFieldConfig.batched(modality, keep_on_cpu=True)
        return config


class AnchoredQwen2_5_VLProcessingInfo(AnchorProcessingInfoMixin, Qwen2_5_VLProcessingInfo):
    pass


class AnchoredQwen2_5_VLMultiModalProcessor(AnchorProcessorMixin, Qwen2_5_VLMultiModalProcessor):
    pass


@MULTIMODAL_REGISTRY.register_processor(
    AnchoredQwen2_5_VLMultiModalProcessor,
    info=AnchoredQwen2_5_VLProcessingInfo,
    dummy_inputs=Qwen2_5_VLDummyInputsBuilder,
)
class AnchoredQwen2_5_VLForConditionalGeneration(Qwen2_5_VLForConditionalGeneration):
    pass


class AnchoredQwen2VLProcessingInfo(AnchorProcessingInfoMixin, Qwen2VLProcessingInfo):
    pass


class AnchoredQwen2VLMultiModalProcessor(AnchorProcessorMixin, Qwen2VLMultiModalProcessor):
    pass


@MULTIMODAL_REGISTRY.register_processor(
    AnchoredQwen2VLMultiModalProcessor,
    info=AnchoredQwen2VLProcessingInfo,
    dummy_inputs=Qwen2VLDummyInputsBuilder,
)
class AnchoredQwen2VLForConditionalGeneration(Qwen2VLForConditionalGeneration):
    pass
