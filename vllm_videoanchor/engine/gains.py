"""Per-token gains of the current step, and the per-slot gain cache that outlives it.

`embed_input_ids` (eager, once per step, before the decoder) publishes the gains of the
step's tokens; the first attention layer of the step writes them at the step's KV slots,
so that a slot's gains always describe the K/V it holds (later chunks and prefix-cache
hits read them back through the block table). Anchored attention over a context whose
gains are all 1 is plain attention, so a request needs the anchored path iff its context
holds a gain != 1: no request ids needed. Until the first anchored request, nothing is
written or read (one flag check per layer).
"""

from __future__ import annotations

import torch

from . import compat
from .anchored_attention import context_slots


class GainState:
    """Process-wide state shared by the model's embedding step and its attention layers."""

    def __init__(self) -> None:
        self.step_gains: tuple[torch.Tensor, torch.Tensor] | None = None
        self.pending_write = False
        self.live = False  # some slot may hold a gain != 1
        self.slot_gain_k: torch.Tensor | None = None
        self.slot_gain_v: torch.Tensor | None = None
        self.step_requests: list[int] = []  # requests of this step needing the anchored path
        self._step_metadata = None  # the attention metadata step_requests were found for

    def publish_step(self, gains: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """Gains of this step's tokens (None: all 1)."""
        self.step_gains = gains
        self.pending_write = gains is not None or self.live

    def active(self) -> bool:
        return self.pending_write or self.live

    def begin_step(self, metadata, num_slots: int, block_size: int) -> list[int]:
        """Called by every attention layer; the first of the step stores the step's gains at
        its KV slots, and the requests needing the anchored path are found once per metadata
        object (layers sharing a KV-cache group share it), not once per layer."""
        if self.pending_write:
            self.pending_write = False
            step = compat.step_metadata(metadata)
            self._write_slots(step.slot_mapping[:step.num_actual_tokens], num_slots)
            self._step_metadata = None
        if metadata is not self._step_metadata:
            self._step_metadata = metadata
            self.step_requests = self._anchored_requests(compat.step_metadata(metadata), block_size)
        return self.step_requests

    def _anchored_requests(self, metadata: compat.StepMetadata, block_size: int) -> list[int]:
        """Prefilling requests whose context holds a gain != 1 (decode rows stay plain)."""
        starts = metadata.query_start_loc.tolist()
        prefilling = metadata.is_prefilling
        chosen = []
        for r, context_len in enumerate(metadata.seq_lens.tolist()):
            q_len = starts[r + 1] - starts[r]
            is_prefill = bool(prefilling[r]) if prefilling is not None else q_len > 1
            if q_len == 0 or not is_prefill:
                continue
            slots = context_slots(metadata.block_table[r], context_len, block_size)
            if bool((self.slot_gain_k[slots] != 1).any() | (self.slot_gain_v[slots] != 1).any()):
                chosen.append(r)
        return chosen

    def _write_slots(self, slot_mapping: torch.Tensor, num_slots: int) -> None:
        """Store the step's gains (1 where none were published) at its KV slots."""
        if self.slot_gain_k is None or self.slot_gain_k.numel() != num_slots:
            self.slot_gain_k = torch.ones(num_slots, dtype=torch.float32, device=slot_mapping.device)
            self.slot_gain_v = torch.ones_like(self.slot_gain_k)
        n = slot_mapping.numel()
        valid = slot_mapping >= 0
        slots = slot_mapping[valid].long()
        if self.step_gains is None:
            self.slot_gain_k[slots] = 1.0
            self.slot_gain_v[slots] = 1.0
        else:
            gain_k, gain_v = (g[:n].to(slot_mapping.device)[valid] for g in self.step_gains)
            self.slot_gain_k[slots] = gain_k
            self.slot_gain_v[slots] = gain_v
            self.live = True


GAINS = GainState()
