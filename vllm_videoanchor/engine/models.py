"""Anchored subclasses of vLLM's multimodal models: one mixin per role, one line per model.

The processor takes `anchor` out of the request's mm_processor_kwargs before any Hugging
Face call (where it would be an unknown kwarg, and `get_hf_processor` is cached on its
kwargs), validates it, and attaches it to every item as a field, so that it is part of the
item's data and of the multimodal hash (the kwargs are hashed as the request sent them):
anchored and plain requests on the same media never share encoder-cache entries or KV
blocks. A new model is a small subclass of its vLLM class with these mixins.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping

import torch

from vllm.logger import init_logger
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

from ..anchor import compute_anchor_gains
from .gains import GAIN_COLUMNS, GAINS, pack_gains, unpack_gains
from . import solve_log
from .option import ANCHOR_KEY, REQUEST_TAG_KEY, content_digest, decode, encode, item_digest, split_anchor_option
from .stats import record_failure, record_solve

# under vLLM's logger tree: its format (which process / rank) and VLLM_LOGGING_LEVEL apply
logger = init_logger("vllm.videoanchor")

# per-item field carrying the encoded option, per modality, and the key giving the item count
ITEM_FIELDS = {"video": ("video_anchor", "video_grid_thw"), "image": ("image_anchor", "image_grid_thw")}


# pixel tensors per modality (rows per item = the item's grid product)
PIXEL_KEYS = {"video": "pixel_values_videos", "image": "pixel_values"}

# server-wide bound on an anchored item's visual tokens (0 = none), set by the server
MAX_TOKENS_ENV = "VIDEOANCHOR_MAX_VISUAL_TOKENS"

# request tag -> digests of its anchored items, for the server in this process (bounded)
REQUEST_DIGESTS: OrderedDict[str, list[int]] = OrderedDict()
_DIGEST_BY_HASH: OrderedDict[str, int] = OrderedDict()
_BOUND = 4096


def _remember(table: OrderedDict, key, value) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > _BOUND:
        table.popitem(last=False)


# the keys that introduce a modality in embed_multimodal's kwargs (their order is the
# order of the returned items, in every Qwen-VL model)
MODALITY_KEYS = {"pixel_values": "image", "image_embeds": "image",
                 "pixel_values_videos": "video", "video_embeds": "video"}


def modality_order(kwargs: Mapping[str, object]) -> list[str]:
    order = []
    for key in kwargs:
        modality = MODALITY_KEYS.get(key)
        if modality and modality not in order:
            order.append(modality)
    return order


def check_parallel_config(parallel_config) -> None:
    """Pipeline parallelism is refused at start-up: only the first stage sees the embeddings
    (and so the gains); later stages would silently run plain attention."""
    stages = getattr(parallel_config, "pipeline_parallel_size", 1)
    if stages > 1:
        raise ValueError(
            f"vllm-videoanchor does not support pipeline parallelism (pipeline_parallel_size="
            f"{stages}): use tensor or data parallelism, or disable the plugin with "
            "VLLM_PLUGINS set to a list without 'videoanchor'"
        )


class AnchorProcessingInfoMixin:
    """Keeps `anchor` away from the Hugging Face processor."""

    def get_hf_processor(self, **kwargs: object):
        kwargs.pop(ANCHOR_KEY, None)
        return super().get_hf_processor(**kwargs)


class AnchorProcessorMixin:
    """Validates the option, strips it, and attaches it to every item."""

    def apply(self, inputs, timing_ctx):
        """Takes the server's request tag out before hashing; afterwards records the
        digests of the request's anchored items under it."""
        tag = inputs.hf_processor_mm_kwargs.get(REQUEST_TAG_KEY)
        if tag is None:
            return super().apply(inputs, timing_ctx)
        kwargs = {k: v for k, v in inputs.hf_processor_mm_kwargs.items() if k != REQUEST_TAG_KEY}
        result = super().apply(dataclasses.replace(inputs, hf_processor_mm_kwargs=kwargs), timing_ctx)
        digests = []
        for modality, (field, _) in ITEM_FIELDS.items():
            hashes = result["mm_hashes"].get(modality, [])
            items = result["mm_kwargs"].get(modality, [None] * len(hashes))
            for mm_hash, item in zip(hashes, items):
                if item is not None and field in item:
                    _remember(_DIGEST_BY_HASH, mm_hash, item_digest(item[field].data))
                digest = _DIGEST_BY_HASH.get(mm_hash, 0)
                if digest:
                    digests.append(digest)
        _remember(REQUEST_DIGESTS, str(tag), digests)
        return result

    def _call_hf_processor(self, hf_data: Mapping[str, object], hf_kwargs: Mapping[str, object]):
        params, rest = split_anchor_option(hf_kwargs)
        if params is not None:
            from vllm.platforms import current_platform

            if not current_platform.is_cpu():
                raise ValueError(
                    f"{ANCHOR_KEY}: anchored attention is only wired for vLLM's CPU "
                    "attention backend in this version"
                )
        outputs = super()._call_hf_processor(hf_data, rest)
        if params is not None:
            self._check_token_counts(params, outputs)
        for modality, (field, count_key) in ITEM_FIELDS.items():
            if count_key in outputs:
                outputs[field] = self._item_vectors(params, outputs, modality)
        return outputs

    @staticmethod
    def _item_vectors(params, outputs, modality) -> torch.Tensor:
        """One encoded option per item, each with the digest of the item's pixels and option."""
        field, count_key = ITEM_FIELDS[modality]
        grids = outputs[count_key]
        if params is None:
            return encode(None).expand(len(grids), -1).clone()
        option = encode(params)
        pixels = outputs.get(PIXEL_KEYS[modality])
        vectors, start = [], 0
        for grid in grids:
            rows = int(grid.prod())
            parts = [option, grid] + ([pixels[start:start + rows]] if pixels is not None else [])
            vectors.append(encode(params, content_digest(*parts)))
            start += rows
        return torch.stack(vectors)

    def _check_token_counts(self, params, outputs) -> None:
        """Knobs bounded by an item's number of visual tokens are checked here, before the
        engine sees the request (the solver would raise inside the model runner)."""
        merge = self.info.get_hf_config().vision_config.spatial_merge_size
        width = self.info.get_hf_config().get_text_config().hidden_size
        for _, count_key in ITEM_FIELDS.values():
            for grid in outputs.get(count_key, []):
                n_tokens = int(grid.prod()) // merge**2
                if params.n_clusters > n_tokens:
                    raise ValueError(
                        f"{ANCHOR_KEY}.n_clusters={params.n_clusters} exceeds the {n_tokens} "
                        "visual tokens of an item"
                    )
                if params.pca_rank > min(n_tokens, width):
                    raise ValueError(
                        f"{ANCHOR_KEY}.pca_rank={params.pca_rank} exceeds "
                        f"min(visual tokens, hidden size) = {min(n_tokens, width)}"
                    )
                if n_tokens < 2:
                    raise ValueError(f"{ANCHOR_KEY}: an item needs at least 2 visual tokens")
                limit = int(os.environ.get(MAX_TOKENS_ENV) or 0)
                if limit and n_tokens > limit:
                    raise ValueError(
                        f"{ANCHOR_KEY}: an item has {n_tokens} visual tokens, over this server's "
                        f"limit of {limit} for anchored items (fewer frames or pixels, or anchor off)"
                    )

    def _get_mm_fields_config(self, hf_inputs, hf_processor_mm_kwargs):
        config = dict(super()._get_mm_fields_config(hf_inputs, hf_processor_mm_kwargs))
        for modality, (field, _) in ITEM_FIELDS.items():
            config[field] = MultiModalFieldConfig.batched(modality, keep_on_cpu=True)
        return config


class AnchorModelMixin:
    """Computes gains for anchored items and hands them to the attention, per step.

    `embed_multimodal` returns anchored items with GAIN_COLUMNS extra columns (they are
    cached with the embedding, so chunked prefill and encoder-cache hits keep them);
    `embed_input_ids` strips them and publishes the step's per-token gains.
    """

    def __init__(self, *, vllm_config, prefix: str = ""):
        check_parallel_config(vllm_config.parallel_config)
        super().__init__(vllm_config=vllm_config, prefix=prefix)

    def embed_multimodal(self, **kwargs: object):
        encoded = {m: kwargs.pop(field, None) for m, (field, _) in ITEM_FIELDS.items()}
        embeddings = list(super().embed_multimodal(**kwargs))
        vectors = [
            vector
            for modality in modality_order(kwargs)
            if encoded.get(modality) is not None
            for vector in encoded[modality]
        ]
        if vectors and len(vectors) != len(embeddings):
            raise RuntimeError(
                f"anchor: {len(vectors)} item options for {len(embeddings)} embeddings"
            )
        for item, vector in enumerate(vectors):
            params = decode(vector)
            if params is None:
                continue
            try:
                gains = compute_anchor_gains(embeddings[item].float(), params)
            except ValueError as exc:  # degenerate tokens: never take the engine down
                logger.warning("anchor: item left unanchored: %s", exc)
                record_failure()
            else:
                record_solve(gains.seconds, gains.n_iter, gains.converged)
                if logger.isEnabledFor(logging.DEBUG):  # how tensor-parallel ranks are compared
                    logger.debug("anchor: item %012x gains %012x, %d iterations, %.4f s", item_digest(vector),
                                 content_digest(gains.gain_k, gains.gain_v), gains.n_iter, gains.seconds)
                solve_log.write(item_digest(vector), gains.seconds, gains.n_iter, gains.converged)
                embeddings[item] = pack_gains(embeddings[item], gains.gain_k, gains.gain_v)
        return tuple(embeddings)

    def embed_input_ids(self, input_ids, multimodal_embeddings=None, *, is_multimodal=None):
        hidden = self.config.get_text_config().hidden_size
        packed = [e.shape[-1] == hidden + GAIN_COLUMNS for e in multimodal_embeddings or ()]
        if not any(packed):
            GAINS.publish_step(None)
            return super().embed_input_ids(
                input_ids, multimodal_embeddings, is_multimodal=is_multimodal
            )
        stripped, gains_k, gains_v = [], [], []
        for embedding, has_gains in zip(multimodal_embeddings, packed):
            if has_gains:
                embedding, gain_k, gain_v = unpack_gains(embedding)
            else:
                gain_k = gain_v = torch.ones(embedding.shape[0], device=embedding.device)
            stripped.append(embedding)
            gains_k.append(gain_k)
            gains_v.append(gain_v)
        step_k = torch.ones(input_ids.shape[0], dtype=torch.float32, device=input_ids.device)
        step_v = torch.ones_like(step_k)
        mask = is_multimodal.to(input_ids.device)
        step_k[mask] = torch.cat(gains_k).to(step_k.device)
        step_v[mask] = torch.cat(gains_v).to(step_v.device)
        GAINS.publish_step((step_k, step_v))
        return super().embed_input_ids(input_ids, stripped, is_multimodal=is_multimodal)


class AnchoredQwen2_5_VLProcessingInfo(AnchorProcessingInfoMixin, Qwen2_5_VLProcessingInfo):
    pass


class AnchoredQwen2_5_VLMultiModalProcessor(AnchorProcessorMixin, Qwen2_5_VLMultiModalProcessor):
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


class AnchoredQwen2VLMultiModalProcessor(AnchorProcessorMixin, Qwen2VLMultiModalProcessor):
    pass


@MULTIMODAL_REGISTRY.register_processor(
    AnchoredQwen2VLMultiModalProcessor,
    info=AnchoredQwen2VLProcessingInfo,
    dummy_inputs=Qwen2VLDummyInputsBuilder,
)
class AnchoredQwen2VLForConditionalGeneration(AnchorModelMixin, Qwen2VLForConditionalGeneration):
    pass
