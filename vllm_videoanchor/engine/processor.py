"""The `anchor` option's way through vLLM's multimodal processor: strip, validate, attach, hash.

The option arrives in the request's mm_processor_kwargs. It is taken out before any
Hugging Face call (an unknown kwarg there, and `get_hf_processor` is cached on its kwargs),
validated against the engine (anything the engine could not honour is an error here, before
the engine runs: a 400 from the server), and attached to every item as a field (all items
of a batch must carry the same fields). It enters the multimodal hash in its resolved form
(the model's defaults filled in, no-op fields left out): anchored and plain requests on the
same media never share encoder-cache entries or KV blocks, while `true` and the same values
spelled out do. The hooks used are vLLM's documented processor hooks (`_get_hf_mm_inputs`,
`_postprocess_hf_mm_data`, `_get_mm_fields_config`) plus `apply`; hashing and the cache
view of joint groups are in joint.py. Families supply `_visual_items` and `_group_keys`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
from vllm.multimodal.inputs import MultiModalFieldConfig

from ..anchor import TokenSetError
from ..settings import AnchorSettings, process_settings
from . import compat, joint
from .availability import request_refusal
from .option import (
    ANCHOR_KEY,
    REQUEST_TAG_KEY,
    ItemOption,
    content_digest,
    hashed_option,
    split_anchor_option,
)
from .solve_log import REQUEST_ITEMS

# per-item field carrying the encoded option, per modality
ITEM_FIELDS = {"video": "video_anchor", "image": "image_anchor"}
# the parsed option's way from _get_hf_mm_inputs to _postprocess_hf_mm_data (vLLM merges a
# processor's passthrough data into its outputs between the two hooks)
PARAMS_KEY = "videoanchor_params"


class AnchorProcessingInfoMixin:
    """Keeps `anchor` away from the Hugging Face processor."""

    def get_hf_processor(self, **kwargs: object):
        kwargs.pop(ANCHOR_KEY, None)
        return super().get_hf_processor(**kwargs)


class AnchorProcessorMixin:
    """Validates the option, strips it, attaches it to every item, and hashes it."""

    @property
    def settings(self) -> AnchorSettings:
        return process_settings()

    def apply(self, inputs, timing_ctx):
        """Hashes the option in its resolved form and without the server's request tag;
        afterwards records the digests of the request's anchored items under the tag."""
        kwargs = dict(inputs.hf_processor_mm_kwargs)
        tag = kwargs.pop(REQUEST_TAG_KEY, None)
        params, rest = split_anchor_option(kwargs, compat.architecture(self.info), self.settings.request_defaults())
        if params is not None:
            rest[ANCHOR_KEY] = hashed_option(params)
        result = super().apply(dataclasses.replace(inputs, hf_processor_mm_kwargs=rest), timing_ctx)
        if tag is not None:
            self._note_request(str(tag), result)
        return result

    def _note_request(self, tag: str, result) -> None:
        hashes = []
        for modality, field in ITEM_FIELDS.items():
            modality_hashes = result["mm_hashes"].get(modality, [])
            items = result["mm_kwargs"].get(modality, [None] * len(modality_hashes))
            for mm_hash, item in zip(modality_hashes, items):
                if item is not None and field in item:
                    REQUEST_ITEMS.note_item(mm_hash, ItemOption.from_tensor(item[field].data).digest)
            hashes += modality_hashes
        REQUEST_ITEMS.note_request(tag, hashes)

    def _get_mm_hashes(self, inputs):
        hashes = super()._get_mm_hashes(inputs)
        images = hashes.get(joint.JOINT_MODALITY, [])
        if ANCHOR_KEY not in inputs.hf_processor_mm_kwargs or not joint.is_joint(joint.JOINT_MODALITY, len(images)):
            return hashes
        return {**hashes, joint.JOINT_MODALITY: joint.group_hashes(images)}

    def _get_cache_missing_items(self, cache, mm_data_items, mm_hashes):
        return super()._get_cache_missing_items(joint.WholeGroups(cache), mm_data_items, mm_hashes)

    def _get_hf_mm_inputs(self, mm_items, hf_kwargs: Mapping[str, object]):
        """The Hugging Face inputs without our kwargs; the parsed option rides along as
        passthrough data. An engine that cannot anchor refuses here, before it runs."""
        params, rest = split_anchor_option(hf_kwargs, compat.architecture(self.info), self.settings.request_defaults())
        if params is not None:
            reason = request_refusal(self.info)
            if reason:
                raise ValueError(reason)
        inputs = super()._get_hf_mm_inputs(mm_items, rest)
        return inputs._replace(passthrough_data={**inputs.passthrough_data, PARAMS_KEY: params})

    def _postprocess_hf_mm_data(self, mm_inputs, hf_processor_mm_kwargs, processed_data):
        """Every item gets its encoded option (and, in a joint group, the group's inputs)."""
        outputs = super()._postprocess_hf_mm_data(mm_inputs, hf_processor_mm_kwargs, processed_data)
        params = outputs.pop(PARAMS_KEY, None)
        for modality, field in ITEM_FIELDS.items():
            items = self._visual_items(outputs, modality)
            if not items:
                continue
            together = params is not None and joint.is_joint(modality, len(items))
            if params is not None:
                self._check_token_counts(params, [sum(n for n, _ in items)] if together else [n for n, _ in items])
            outputs[field] = self._item_vectors(params, items, together)
            if together:
                outputs.update(joint.group_inputs(outputs, self._group_keys(), len(items)))
        return outputs

    def _get_mm_fields_config(self, hf_inputs, hf_processor_mm_kwargs):
        config = dict(super()._get_mm_fields_config(hf_inputs, hf_processor_mm_kwargs))
        for modality, field in ITEM_FIELDS.items():
            config[field] = MultiModalFieldConfig.batched(modality, keep_on_cpu=True)
        for key in hf_inputs:
            if key.startswith(joint.GROUP_PREFIX):
                config[key] = MultiModalFieldConfig.batched(joint.JOINT_MODALITY)
        return config

    # --- family hooks -----------------------------------------------------------------

    def _visual_items(self, outputs, modality) -> list[tuple[int, list[torch.Tensor]]]:
        """(visual tokens, tensors that identify it) per item of `modality` in the processor's
        outputs."""
        raise NotImplementedError

    def _group_keys(self) -> tuple[str, ...]:
        """The processor outputs that embed_multimodal takes for a group of images."""
        raise NotImplementedError

    # --- helpers ----------------------------------------------------------------------

    def _item_vectors(self, params, items, together: bool) -> torch.Tensor:
        """One encoded option per item, each with the digest of the item's content and option
        (of the whole group's, for the members of a joint group)."""
        if params is None:
            return ItemOption(None).to_tensor().expand(len(items), -1).clone()
        option = ItemOption(params).to_tensor()  # what every item's digest covers, with its content
        if together:
            digest = content_digest(option, *(part for _, content in items for part in content))
            options = [ItemOption(params, len(items), member, digest) for member in range(len(items))]
        else:
            options = [ItemOption(params, digest=content_digest(option, *content)) for _, content in items]
        return torch.stack([o.to_tensor() for o in options])

    def _check_token_counts(self, params, token_counts: list[int]) -> None:
        """Knobs bounded by an item's number of visual tokens are checked here, before the
        engine sees the request (the solver would only fail inside the model runner)."""
        width = self.info.get_hf_config().get_text_config().hidden_size
        limit = self.settings.max_visual_tokens
        for n_tokens in token_counts:
            try:
                params.check_token_set(n_tokens, width)
            except TokenSetError as exc:  # "field=value ..." becomes "anchor.field=value ..."
                raise ValueError(f"{ANCHOR_KEY}.{exc}" if exc.field else f"{ANCHOR_KEY}: {exc}") from None
            if limit and n_tokens > limit:
                raise ValueError(
                    f"{ANCHOR_KEY}: an item has {n_tokens} visual tokens, over this server's "
                    f"limit of {limit} for anchored items (fewer frames or pixels, or anchor off)"
                )
