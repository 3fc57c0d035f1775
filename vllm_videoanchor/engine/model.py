"""The model side: encode the items, solve the anchored ones, publish the step's gains.

`embed_multimodal` returns anchored items with gain columns appended (packed.py: they are
cached with the embedding, so chunked prefill and encoder-cache hits keep them);
`embed_input_ids` strips them and publishes the step's per-token gains for the attention
(gains.py). A solve that fails serves its item plain, and says so: the outcome goes to the
solve log (the server's response header), the metrics and the log, never an exception in
the model step. Families supply `_solver_rows` (rows that are visual tokens).
"""

from __future__ import annotations

import logging

import torch
from vllm.logger import init_logger

from ..anchor import compute_anchor_gains
from ..settings import process_settings
from . import compat, joint
from .attention.forward import AnchoredForwardMixin
from .attention.gains import GainState
from .availability import engine_verdict
from .option import ItemOption, content_digest
from .packed import PackedLayout
from .processor import ITEM_FIELDS
from .solve_log import SolveLog, SolveOutcome
from .stats import record_failure, record_solve

# under vLLM's logger tree: its format (which process / rank) and VLLM_LOGGING_LEVEL apply
logger = init_logger("vllm.videoanchor")

# the keys that introduce a modality in embed_multimodal's kwargs (their order is the
# order of the returned items in every supported model)
MODALITY_KEYS = {"pixel_values": "image", "image_embeds": "image", "pixel_values_flat": "image",
                 "pixel_values_videos": "video", "video_embeds": "video", "pixel_values_flat_video": "video"}


def modality_order(kwargs) -> list[str]:
    order = []
    for key in kwargs:
        modality = MODALITY_KEYS.get(key)
        if modality and modality not in order:
            order.append(modality)
    return order


DECODE_ONLY = ("the encoder output of this anchored item did not arrive from an encoder instance, and this "
               "prefill/decode instance does not solve (encoder disaggregation): send the request through "
               "the router, which runs the encoder instance first")


class AnchorModelMixin:
    """Computes gains for anchored items and hands them to the attention, per step."""

    # embed_multimodal kwargs that are shared by all items of a call, which a group's own
    # encoder call needs too (e.g. InternVL's image_token_id)
    GROUP_SHARED_KEYS: tuple[str, ...] = ()

    def __init__(self, *, vllm_config, prefix: str = ""):
        settings = process_settings()
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        # one verdict (availability.py): an engine that cannot anchor never solves; a server
        # that anchors by default refuses to start, otherwise the reason goes to the solve log
        # (the server answers anchored requests 400 with it) and anchored items that still
        # reach the engine are served plain and reported failed
        self._anchor_unavailable = engine_verdict(vllm_config, self)
        if self._anchor_unavailable and settings.anchor_default:
            raise ValueError(f"vllm-videoanchor: --anchor-default on, but {self._anchor_unavailable}")
        # this engine's gains, shared by its embedding step and its own attention layers only
        self._gains = GainState()
        for _, impl, _ in compat.decoder_attention_layers(self):
            if isinstance(impl, AnchoredForwardMixin):
                impl.gain_state = self._gains
        self._solve_how = dict(backend=settings.solver_backend, eigen_solver=settings.eigen_solver)
        self._solve_budget = settings.solve_budget_seconds or None
        # the decode side of encoder disaggregation never solves (its anchored items arrive
        # solved from the encoder instance); an item that did not arrive is served plain
        self._decode_only = compat.ec_decode_only(vllm_config)
        self._solve_log = SolveLog(settings.solve_log)
        self._solve_log.record_engine(self._anchor_unavailable)
        self._joint_gains = joint.JointGains()
        self._layout = PackedLayout(compat.text_hidden_size(self), compat.deepstack_columns(self),
                                    compat.evs_columns(self))

    def embed_multimodal(self, **kwargs: object):
        encoded = {modality: kwargs.pop(field, None) for modality, field in ITEM_FIELDS.items()}
        group_inputs = joint.take_group_inputs(kwargs)
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
            option = ItemOption.from_tensor(vector)
            if option.params is None:
                continue
            if option.group_size > 1:
                group = {key: value[position] for key, value in group_inputs.items()}
                group.update({key: kwargs[key] for key in self.GROUP_SHARED_KEYS if key in kwargs})
                gains = self._joint_gains_of(modality, group, option.params, option.digest)
                if gains is not None:
                    embeddings[index] = self._layout.pack(embeddings[index], *gains[option.member])
            else:
                embeddings[index] = self._anchor_item(modality, embeddings[index], option.params, option.digest)
        return tuple(embeddings)

    def _joint_gains_of(self, modality, group_inputs, params, digest) -> list | None:
        """(gain_k, gain_v) per member of a joint group, from one solve over all members'
        tokens (see joint.py). None if the solve failed."""
        cached = self._joint_gains.get(digest)
        if cached is not None:
            return cached
        members = list(super().embed_multimodal(**group_inputs))
        rows = [self._solver_rows(modality, member) for member in members]
        tokens = torch.cat([self._layout.tokens(member)[r] for member, r in zip(members, rows)])
        gains = self._solve(tokens, params, digest)
        if gains is None:
            return None
        per_member = joint.split_gains(members, rows, gains.gain_k, gains.gain_v)
        self._joint_gains.put(digest, per_member)
        return per_member

    def _anchor_item(self, modality, embedding, params, digest) -> torch.Tensor:
        """The item's embedding with its gain columns appended (unchanged if the solve
        failed: a bad item never takes the engine down)."""
        rows = self._solver_rows(modality, embedding)
        gains = self._solve(self._layout.tokens(embedding)[rows], params, digest)
        if gains is None:
            return embedding
        return self._layout.pack(embedding, *joint.spread_gains(len(embedding), rows, gains.gain_k, gains.gain_v))

    def _solve(self, tokens, params, digest):
        """compute_anchor_gains, counted and reported; None when it fails (any exception:
        the item is served plain, the failure is logged, counted and reported)."""
        if self._anchor_unavailable:
            return self._fail(digest, self._anchor_unavailable)
        if self._decode_only:
            return self._fail(digest, DECODE_ONLY)
        try:
            gains = compute_anchor_gains(tokens.float(), params, **self._solve_how, time_budget=self._solve_budget)
        except Exception as exc:  # noqa: BLE001 - whatever the solver raises, the step goes on
            return self._fail(digest, f"{type(exc).__name__}: {exc}")
        record_solve(gains.seconds, gains.n_iter, gains.converged)
        # the map first: a server that sees the outcome finds the map too
        self._solve_log.record_anchors(digest, gains.score, gains.labels)
        self._solve_log.record(digest, SolveOutcome.of(gains))
        if logger.isEnabledFor(logging.DEBUG):  # how tensor-parallel ranks are compared
            logger.debug("anchor: item %012x gains %012x, %d iterations, %.4f s", digest,
                         content_digest(gains.gain_k, gains.gain_v), gains.n_iter, gains.seconds)
        return gains

    def _fail(self, digest: int, reason: str) -> None:
        logger.warning("anchor: item %012x served without anchoring: %s", digest, reason)
        record_failure()
        self._solve_log.record(digest, SolveOutcome(error=reason))
        return None

    def _solver_rows(self, modality: str, embedding: torch.Tensor) -> torch.Tensor | slice:
        """The rows of an item's embedding that are its visual tokens (models that add rows
        of their own, e.g. newline rows, narrow this: those rows keep score 0, gain 1)."""
        return slice(None)

    def embed_input_ids(self, input_ids, multimodal_embeddings=None, *, is_multimodal=None):
        unpacked = [self._layout.unpack(e) for e in multimodal_embeddings or ()]
        if not any(gain_k is not None for _, gain_k, _ in unpacked):
            self._gains.publish_step(None)
            return super().embed_input_ids(input_ids, multimodal_embeddings, is_multimodal=is_multimodal)
        stripped, gains_k, gains_v = [], [], []
        for embedding, gain_k, gain_v in unpacked:
            if gain_k is None:
                gain_k = gain_v = torch.ones(embedding.shape[0], device=embedding.device)
            stripped.append(embedding)
            gains_k.append(gain_k)
            gains_v.append(gain_v)
        step_k = torch.ones(input_ids.shape[0], dtype=torch.float32, device=input_ids.device)
        step_v = torch.ones_like(step_k)
        # from pinned host memory: a blocking copy would sync the stream (and stall async
        # scheduling); masked_scatter_ needs no device-to-host sync either
        mask = is_multimodal.to(input_ids.device, non_blocking=True)
        step_k.masked_scatter_(mask, torch.cat(gains_k).to(step_k))
        step_v.masked_scatter_(mask, torch.cat(gains_v).to(step_v))
        self._gains.publish_step((step_k, step_v))
        return super().embed_input_ids(input_ids, stripped, is_multimodal=is_multimodal)
