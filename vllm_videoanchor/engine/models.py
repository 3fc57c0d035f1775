"""Anchored subclasses of vLLM's multimodal models: one mixin per role, one line per model.

The processor takes `anchor` out of the request's mm_processor_kwargs before any Hugging
Face call (where it would be an unknown kwarg, and `get_hf_processor` is cached on its
kwargs), validates it, and attaches it to every item as a field. The option enters the
multimodal hash in its resolved form (the model's defaults filled in): anchored and plain
requests on the same media never share encoder-cache entries or KV blocks, while `true`
and the same values spelled out do. A request's images are anchored jointly, as one token
set (the multi-view case); see `_get_mm_hashes` and `AnchorModelMixin._joint_gains`.
A new model is a small subclass of its vLLM class with these mixins.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping

import torch

from vllm.logger import init_logger
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
from vllm.model_executor.models.llava_onevision import (
    LlavaOnevisionDummyInputsBuilder,
    get_anyres_image_grid_shape,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionMultiModalProcessor,
    LlavaOnevisionProcessingInfo,
)
from vllm.model_executor.models.qwen2_5_vl import (
    Qwen2_5_VLDummyInputsBuilder,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLMultiModalProcessor,
    Qwen2_5_VLProcessingInfo,
)
from vllm.model_executor.models.qwen3_vl import (
    Qwen3VLDummyInputsBuilder,
    Qwen3VLForConditionalGeneration,
    Qwen3VLMultiModalProcessor,
    Qwen3VLProcessingInfo,
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
from .option import (
    ANCHOR_KEY, REQUEST_TAG_KEY, content_digest, decode, encode, item_digest, item_group, split_anchor_option,
)
from .stats import record_failure, record_solve

# under vLLM's logger tree: its format (which process / rank) and VLLM_LOGGING_LEVEL apply
logger = init_logger("vllm.videoanchor")

# per-item field carrying the encoded option, per modality, and (Qwen-VL) the key giving the items
ITEM_FIELDS = {"video": ("video_anchor", "video_grid_thw"), "image": ("image_anchor", "image_grid_thw")}


# pixel tensors per modality (rows per item = the item's grid product)
PIXEL_KEYS = {"video": "pixel_values_videos", "image": "pixel_values"}

# A request's images are anchored jointly (one token set): their hashes are combined with
# the group's (prefix marks them), and every member carries the whole group's encoder inputs
# under GROUP_PREFIX + key, so that any member can compute the joint gains on its own.
JOINT_MODALITY = "image"
GROUP_HASH_PREFIX = "videoanchor-group-"
GROUP_PREFIX = "anchor_group_"
JOINT_CACHE_SIZE = 64  # joint solves kept per process (gains of all members)

# server-wide bound on an anchored item's visual tokens (0 = none), set by the server
MAX_TOKENS_ENV = "VIDEOANCHOR_MAX_VISUAL_TOKENS"


# the keys that introduce a modality in embed_multimodal's kwargs (their order is the
# order of the returned items, in every Qwen-VL model)
MODALITY_KEYS = {"pixel_values": "image", "image_embeds": "image", "pixel_values_flat": "image",
                 "pixel_values_videos": "video", "video_embeds": "video", "pixel_values_flat_video": "video"}


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


def spread_gains(n_rows: int, rows, gain_k: torch.Tensor, gain_v: torch.Tensor):
    """Gains for all rows of an item: the solver's on its visual `rows`, 1 elsewhere."""
    full_k = torch.ones(n_rows, dtype=gain_k.dtype, device=gain_k.device)
    full_v = torch.ones_like(full_k)
    full_k[rows], full_v[rows] = gain_k, gain_v
    return full_k, full_v


class AnchorProcessingInfoMixin:
    """Keeps `anchor` away from the Hugging Face processor."""

    def get_hf_processor(self, **kwargs: object):
        kwargs.pop(ANCHOR_KEY, None)
        return super().get_hf_processor(**kwargs)


class AnchorProcessorMixin:
    """Validates the option, strips it, and attaches it to every item."""

    def apply(self, inputs, timing_ctx):
        """Hashes the option in its resolved form and without the server's request tag;
        afterwards records the digests of the request's anchored items under the tag."""
        kwargs = dict(inputs.hf_processor_mm_kwargs)
        tag = kwargs.pop(REQUEST_TAG_KEY, None)
        params, _ = split_anchor_option(kwargs, self.info.ctx.model_config.architecture)
        # `true`, the same values spelled out, and the model's defaults hash alike; off
        # hashes like a plain request
        kwargs.pop(ANCHOR_KEY, None)
        if params is not None:
            kwargs[ANCHOR_KEY] = params.model_dump(mode="json")
        result = super().apply(dataclasses.replace(inputs, hf_processor_mm_kwargs=kwargs), timing_ctx)
        if tag is None:
            return result
        hashes = []
        for modality, (field, _) in ITEM_FIELDS.items():
            modality_hashes = result["mm_hashes"].get(modality, [])
            items = result["mm_kwargs"].get(modality, [None] * len(modality_hashes))
            for mm_hash, item in zip(modality_hashes, items):
                if item is not None and field in item:
                    solve_log.note_item(mm_hash, item_digest(item[field].data))
            hashes += modality_hashes
        solve_log.note_request(str(tag), hashes)
        return result

    def _get_mm_hashes(self, inputs):
        """An anchored request's images are one token set: each image's hash also covers the
        others, so an image anchored with other companions never shares caches."""
        hashes = super()._get_mm_hashes(inputs)
        images = hashes.get(JOINT_MODALITY, [])
        if ANCHOR_KEY not in inputs.hf_processor_mm_kwargs or len(images) < 2:
            return hashes
        group = hashlib.sha256("\n".join(images).encode()).hexdigest()
        combined = [GROUP_HASH_PREFIX + hashlib.sha256(f"{h}\n{group}".encode()).hexdigest() for h in images]
        return {**hashes, JOINT_MODALITY: combined}

    def _get_cache_missing_items(self, cache, mm_data_items, mm_hashes):
        """A group is processed whole: if any member left the processor cache, all are
        processed again (the cache keeps the entries it already has)."""
        return super()._get_cache_missing_items(_WholeGroups(cache), mm_data_items, mm_hashes)

    def _call_hf_processor(self, hf_data: Mapping[str, object], hf_kwargs: Mapping[str, object]):
        _, rest = split_anchor_option(hf_kwargs)  # never reaches Hugging Face code
        return super()._call_hf_processor(hf_data, rest)

    def _apply_hf_processor_main(self, mm_items, hf_kwargs: Mapping[str, object]):
        """The processed items, each with the encoded option as a field (every model's
        processing passes through here, whichever HF calls it makes)."""
        params, rest = split_anchor_option(hf_kwargs, self.info.ctx.model_config.architecture)
        if params is not None:
            from vllm.platforms import current_platform

            if not current_platform.is_cpu():
                raise ValueError(
                    f"{ANCHOR_KEY}: anchored attention is only wired for vLLM's CPU "
                    "attention backend in this version"
                )
        outputs = super()._apply_hf_processor_main(mm_items, rest)
        for modality, (field, _) in ITEM_FIELDS.items():
            items = self._visual_items(outputs, modality)
            if not items:
                continue
            joint = params is not None and modality == JOINT_MODALITY and len(items) > 1
            if joint:
                self._check_token_counts(params, [(sum(n for n, _ in items), [])])
            elif params is not None:
                self._check_token_counts(params, items)
            outputs[field] = self._item_vectors(params, items, joint)
            if joint:
                outputs.update(self._group_inputs(outputs, len(items)))
        return outputs

    def _visual_items(self, outputs, modality) -> list[tuple[int, list[torch.Tensor]]]:
        """(visual tokens, tensors that identify it) per item of `modality` in the HF
        processor's outputs. Qwen-VL layout: flattened patches, grid_thw rows per item.
        Other models override this."""
        count_key = ITEM_FIELDS[modality][1]
        if count_key not in outputs:
            return []
        merge = self.info.get_hf_config().vision_config.spatial_merge_size
        grids = outputs[count_key]
        rows = [int(grid.prod()) for grid in grids]
        pixels = outputs.get(PIXEL_KEYS[modality])
        if isinstance(pixels, (list, tuple)):
            per_item = list(pixels)
        elif pixels is not None and pixels.shape[0] == sum(rows):
            per_item = list(torch.split(pixels, rows))
        else:  # another layout: identify each item by all of them
            per_item = [pixels] * len(grids) if pixels is not None else [None] * len(grids)
        return [(n // merge**2, [grid] + ([p] if p is not None else [])) for n, grid, p in zip(rows, grids, per_item)]

    def _item_vectors(self, params, items, joint: bool = False) -> torch.Tensor:
        """One encoded option per item, each with the digest of the item's content and option
        (of the whole group's, for the members of a joint group)."""
        if params is None:
            return encode(None).expand(len(items), -1).clone()
        option = encode(params)
        if joint:
            digest = content_digest(option, *(part for _, content in items for part in content))
            return torch.stack([encode(params, digest, (len(items), member)) for member in range(len(items))])
        vectors = option.expand(len(items), -1).clone()
        for vector, (_, content) in zip(vectors, items):
            vector[-1] = content_digest(option, *content)  # exact: 48 bits fit a float64
        return vectors

    def _group_inputs(self, outputs, n_items: int) -> dict[str, torch.Tensor]:
        """The whole group's encoder inputs (exactly what embed_multimodal takes), repeated
        for every member. Items with other field sets simply go to other encoder calls."""
        group = {}
        for key in self._group_keys():
            value = outputs.get(key)
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"{ANCHOR_KEY}: these images cannot be anchored together (their '{key}' "
                                 "do not stack); send them in separate requests or without `anchor`")
            group[GROUP_PREFIX + key] = value.unsqueeze(0).expand(n_items, *value.shape)
        return group

    def _group_keys(self) -> tuple[str, ...]:
        """The processor outputs that embed_multimodal takes for a group of images."""
        return PIXEL_KEYS[JOINT_MODALITY], ITEM_FIELDS[JOINT_MODALITY][1]

    def _check_token_counts(self, params, items) -> None:
        """Knobs bounded by an item's number of visual tokens are checked here, before the
        engine sees the request (the solver would raise inside the model runner)."""
        width = self.info.get_hf_config().get_text_config().hidden_size
        limit = int(os.environ.get(MAX_TOKENS_ENV) or 0)
        for n_tokens, _ in items:
            if params.clusters_tokens and params.n_clusters > n_tokens:
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
            if limit and n_tokens > limit:
                raise ValueError(
                    f"{ANCHOR_KEY}: an item has {n_tokens} visual tokens, over this server's "
                    f"limit of {limit} for anchored items (fewer frames or pixels, or anchor off)"
                )

    def _get_mm_fields_config(self, hf_inputs, hf_processor_mm_kwargs):
        config = dict(super()._get_mm_fields_config(hf_inputs, hf_processor_mm_kwargs))
        for modality, (field, _) in ITEM_FIELDS.items():
            config[field] = MultiModalFieldConfig.batched(modality, keep_on_cpu=True)
        for key in hf_inputs:
            if key.startswith(GROUP_PREFIX):
                config[key] = MultiModalFieldConfig.batched(JOINT_MODALITY)
        return config


class _WholeGroups:
    """A processor-cache view in which a joint group is cached only if all its members are."""

    def __init__(self, cache):
        self._cache = cache

    def is_cached(self, hashes):
        cached = self._cache.is_cached(hashes)
        grouped = hashes and all(h.startswith(GROUP_HASH_PREFIX) for h in hashes)
        return [False] * len(cached) if grouped and not all(cached) else cached


class AnchorModelMixin:
    """Computes gains for anchored items and hands them to the attention, per step.

    `embed_multimodal` returns anchored items with GAIN_COLUMNS extra columns (they are
    cached with the embedding, so chunked prefill and encoder-cache hits keep them);
    `embed_input_ids` strips them and publishes the step's per-token gains.
    """

    # embed_multimodal kwargs that are shared by all items of a call, which a group's own
    # encoder call needs too (e.g. InternVL's image_token_id)
    GROUP_SHARED_KEYS: tuple[str, ...] = ()

    def __init__(self, *, vllm_config, prefix: str = ""):
        check_parallel_config(vllm_config.parallel_config)
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._joint_cache: OrderedDict[int, list] = OrderedDict()  # digest -> gains per member

    def embed_multimodal(self, **kwargs: object):
        encoded = {m: kwargs.pop(field, None) for m, (field, _) in ITEM_FIELDS.items()}
        group_inputs = {key[len(GROUP_PREFIX):]: kwargs.pop(key) for key in list(kwargs) if key.startswith(GROUP_PREFIX)}
        embeddings = list(super().embed_multimodal(**kwargs))
        items = [
            (modality, position, vector)
            for modality in modality_order(kwargs)
            if encoded.get(modality) is not None
            for position, vector in enumerate(encoded[modality])
        ]
        if items and len(items) != len(embeddings):
            raise RuntimeError(f"anchor: {len(items)} item options for {len(embeddings)} embeddings")
        for index, (modality, position, vector) in enumerate(items):
            params = decode(vector)
            if params is None:
                continue
            size, member = item_group(vector)
            if size > 1:
                group = {key: value[position] for key, value in group_inputs.items()}
                group.update({key: kwargs[key] for key in self.GROUP_SHARED_KEYS if key in kwargs})
                gains = self._joint_gains(modality, group, params, item_digest(vector))
                if gains is not None:
                    embeddings[index] = pack_gains(embeddings[index], *gains[member])
            else:
                embeddings[index] = self._anchor_item(modality, embeddings[index], params, item_digest(vector))
        return tuple(embeddings)

    def _joint_gains(self, modality, group_inputs, params, digest) -> list | None:
        """(gain_k, gain_v) per member of a joint group, from one solve over all members'
        tokens. The group's encoder inputs ride with every member, so this does not depend
        on which members vLLM encodes in this step (chunked prefill, caches): the first
        member encoded solves, the others find the result here, and a miss solves again
        (same inputs, same gains). None if the solver refuses the tokens."""
        cache = self._joint_cache
        if digest in cache:
            cache.move_to_end(digest)
            return cache[digest]
        members = list(super().embed_multimodal(**group_inputs))
        rows = [self._solver_rows(modality, member) for member in members]
        hidden = self.config.get_text_config().hidden_size
        tokens = torch.cat([member[r, :hidden] for member, r in zip(members, rows)])
        gains = self._solve(tokens, params, digest)
        if gains is None:
            return None
        counts = [len(member[r]) for member, r in zip(members, rows)]
        per_member = [spread_gains(len(member), r, gain_k, gain_v) for member, r, gain_k, gain_v
                      in zip(members, rows, gains.gain_k.split(counts), gains.gain_v.split(counts))]
        cache[digest] = per_member
        while len(cache) > JOINT_CACHE_SIZE:
            cache.popitem(last=False)
        return per_member

    def _solver_rows(self, modality: str, embedding: torch.Tensor) -> torch.Tensor | slice:
        """The rows of an item's embedding that are its visual tokens (models that add rows
        of their own, e.g. newline rows, narrow this: those rows keep score 0, gain 1)."""
        return slice(None)

    def _anchor_item(self, modality, embedding, params, digest) -> torch.Tensor:
        """The item's embedding with its gain columns appended (unchanged if the solver
        refuses the tokens: a bad item never takes the engine down)."""
        rows = self._solver_rows(modality, embedding)
        hidden = self.config.get_text_config().hidden_size
        gains = self._solve(embedding[rows, :hidden], params, digest)
        if gains is None:
            return embedding
        return pack_gains(embedding, *spread_gains(len(embedding), rows, gains.gain_k, gains.gain_v))

    def _solve(self, tokens, params, digest):
        """compute_anchor_gains, counted and logged; None (and a warning) if it refuses."""
        try:
            gains = compute_anchor_gains(tokens.float(), params)
        except ValueError as exc:
            logger.warning("anchor: item left unanchored: %s", exc)
            record_failure()
            return None
        record_solve(digest, gains.seconds, gains.n_iter, gains.converged)
        if logger.isEnabledFor(logging.DEBUG):  # how tensor-parallel ranks are compared
            logger.debug("anchor: item %012x gains %012x, %d iterations, %.4f s", digest,
                         content_digest(gains.gain_k, gains.gain_v), gains.n_iter, gains.seconds)
        return gains

    def _embedding_width(self) -> int:
        """Columns of a plain item's embedding (models that carry more than the LM's input
        in it, e.g. Qwen3-VL's deepstack features, widen this)."""
        return self.config.get_text_config().hidden_size

    def embed_input_ids(self, input_ids, multimodal_embeddings=None, *, is_multimodal=None):
        width = self._embedding_width()
        packed = [e.shape[-1] == width + GAIN_COLUMNS for e in multimodal_embeddings or ()]
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


class AnchoredQwen3VLProcessingInfo(AnchorProcessingInfoMixin, Qwen3VLProcessingInfo):
    pass


class AnchoredQwen3VLMultiModalProcessor(AnchorProcessorMixin, Qwen3VLMultiModalProcessor):
    pass


@MULTIMODAL_REGISTRY.register_processor(
    AnchoredQwen3VLMultiModalProcessor,
    info=AnchoredQwen3VLProcessingInfo,
    dummy_inputs=Qwen3VLDummyInputsBuilder,
)
class AnchoredQwen3VLForConditionalGeneration(AnchorModelMixin, Qwen3VLForConditionalGeneration):
    """Items carry deepstack columns after the LM input (the solver sees only the latter);
    the timestamp tokens inside a video's placeholder are text, not visual rows."""

    def _embedding_width(self) -> int:
        return self.visual_dim + (self.multiscale_dim if self.use_deepstack else 0)


class AnchoredLlavaOnevisionProcessingInfo(AnchorProcessingInfoMixin, LlavaOnevisionProcessingInfo):
    pass


class AnchoredLlavaOnevisionMultiModalProcessor(AnchorProcessorMixin, LlavaOnevisionMultiModalProcessor):
    def _visual_items(self, outputs, modality):
        """Videos: [frames, 3, H, W] per item, tokens = frames x pooled grid (the closing
        newline row is not a visual token). Images: any-res patches per item, tokens = the
        base image's and the unpadded grid's features, without the grid's newline rows."""
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
        """An image's placeholder tokens minus its newline rows (vLLM's own arithmetic)."""
        info, config = self.info, self.info.get_hf_config()
        vision = info.get_vision_encoder_info()
        rows, cols = get_anyres_image_grid_shape(image_size=(height, width), grid_pinpoints=config.image_grid_pinpoints,
                                                 patch_size=vision.get_image_size())
        _, newlines = info._get_num_unpadded_features(original_height=height, original_width=width,
                                                      npatches=vision.get_patch_grid_length(),
                                                      num_patch_height=rows, num_patch_width=cols)
        return info.get_num_image_tokens(image_width=width, image_height=height) - newlines

    def _group_keys(self):
        return "pixel_values", "image_sizes"


@MULTIMODAL_REGISTRY.register_processor(
    AnchoredLlavaOnevisionMultiModalProcessor,
    info=AnchoredLlavaOnevisionProcessingInfo,
    dummy_inputs=LlavaOnevisionDummyInputsBuilder,
)
class AnchoredLlavaOnevisionForConditionalGeneration(AnchorModelMixin, LlavaOnevisionForConditionalGeneration):
    def _solver_rows(self, modality, embedding):
        """Every row but the image_newline rows (one closes each video, one ends each row
        of an image's any-res grid): identical rows would represent each other trivially,
        so they stay out of the solver."""
        return (embedding != self.image_newline.to(embedding.dtype)).any(dim=-1)


class InternVLLayoutMixin:
    """InternVL items are tiles (images) or frames (videos) of `image_seq_length` tokens
    each, their pixels stacked and split by `{modality}_num_patches`. Inside a video's
    placeholder the "FrameN: <img>" / "</img>" tokens are text, so the item's rows are its
    visual tokens only. PIXELS: the pixel keys of the format (HF or original)."""

    PIXELS = {"image": "pixel_values", "video": "pixel_values_videos"}

    def _visual_items(self, outputs, modality):
        counts, pixels = outputs.get(f"{modality}_num_patches"), outputs.get(self.PIXELS[modality])
        if counts is None or pixels is None:
            return []
        counts = [int(n) for n in counts]
        per_tile = self.info.get_hf_processor().image_seq_length
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
