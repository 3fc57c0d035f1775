"""Per-token gains of the current step, and the per-slot gain cache that outlives it.

`embed_input_ids` (eager, once per step, before the decoder) publishes the gains of the
step's tokens; the first attention layer of the step writes them at the step's KV slots,
so that a slot's gains always describe the K/V it holds (later chunks and prefix-cache
hits read them back through the block table). Anchored attention over a context whose
gains are all 1 is plain attention, so a request needs the anchored path iff its context
holds a gain != 1: no request ids needed. Until the first anchored request, nothing is
written or read (one flag check per layer).

No device-to-host sync on either path (the same code serves CPU and CUDA): padded slots
(-1) write a spare slot at the end of the cache instead of being filtered out, and which
prefilling requests hold a gain != 1 is decided on the device (one flag per request, read
by the kernel); which requests are prefilling comes from the host copies of the metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import compat


@dataclass(frozen=True)
class AnchoredRows:
    """The step's prefilling requests (a host list, and the same as int32 on the device)
    and, per request, whether its context holds a gain != 1 (device int32: 1 for the
    requests that need the anchored path; the kernel skips the others)."""

    requests: list[int]
    indices: torch.Tensor
    enabled: torch.Tensor
    step: compat.StepMetadata | None  # the step's metadata they were found in

    def chosen(self) -> list[int]:
        """The requests that need the anchored path (reads `enabled` on the host: for the
        CPU engine's torch path, where that costs nothing)."""
        return [r for r, on in zip(self.requests, self.enabled.tolist()) if on]


NO_ROWS = AnchoredRows([], torch.zeros(0, dtype=torch.int32), torch.zeros(0, dtype=torch.int32), None)


def prefilling_requests(step: compat.StepMetadata) -> list[int]:
    """Requests of the step with prefill tokens (decode rows stay plain), from host data:
    vLLM's `is_prefilling` where the runner provides it (a one-token prefill row, e.g. a
    full prefix-cache hit recomputing the last prompt token, is still a prefill), else
    chunks of more than one token."""
    starts = step.query_start_loc_cpu
    q_lens = starts[1:] - starts[:-1]
    prefill = step.is_prefilling[:q_lens.shape[0]].bool() if step.is_prefilling is not None else q_lens > 1
    return torch.nonzero((q_lens > 0) & prefill).flatten().tolist()


def context_holds_gains(step: compat.StepMetadata, rows: torch.Tensor, block_anchored: torch.Tensor,
                        slot_gain_k: torch.Tensor, slot_gain_v: torch.Tensor, block_size: int) -> torch.Tensor:
    """Per request of `rows` (device int32: 1 or 0): does any slot of its context hold a
    gain != 1? Its full blocks are read from the per-block flags (`block_anchored`: does
    any slot of the block hold a gain != 1; exact for a block wholly in context), its last,
    partial block slot by slot (slots past the context may hold a recycled block's old
    gains). Temporaries are [requests x blocks] and [requests x block_size], never
    [requests x tokens]; no sync."""
    rows = rows.long()
    blocks = step.block_table[rows][:, :-(-step.max_seq_len // block_size)].long()  # [R, n_blocks]
    seq_lens = step.seq_lens[rows].long()
    full_blocks = seq_lens // block_size
    block_index = torch.arange(blocks.shape[1], device=blocks.device)
    in_full_block = block_index[None, :] < full_blocks[:, None]
    full_hold = (block_anchored[blocks] & in_full_block).any(dim=1)
    last_block = blocks.gather(1, full_blocks.clamp(max=blocks.shape[1] - 1)[:, None])  # [R, 1]
    offsets = torch.arange(block_size, device=blocks.device)
    last_slots = last_block * block_size + offsets[None, :]  # [R, block_size]
    in_context = offsets[None, :] < (seq_lens % block_size)[:, None]
    differs = (slot_gain_k[last_slots] != 1) | (slot_gain_v[last_slots] != 1)
    return (full_hold | (differs & in_context).any(dim=1)).to(torch.int32)


class GainState:
    """One engine's gains: the model's embedding step publishes the step's, its attention
    layers store them per slot and read them back. The model owns it and hands it to its
    layers (forward.py), so engines and processes never share one."""

    def __init__(self) -> None:
        self.step_gains: tuple[torch.Tensor, torch.Tensor] | None = None
        self.pending_write = False
        self.live = False  # some slot may hold a gain != 1
        self.slot_gain_k: torch.Tensor | None = None
        self.slot_gain_v: torch.Tensor | None = None
        self.block_anchored: torch.Tensor | None = None  # per KV block: some slot holds a gain != 1
        self.block_size = 0
        self.step_rows: AnchoredRows = NO_ROWS  # this step's candidates for the anchored path
        self._step_metadata = None  # the attention metadata step_rows were found for

    def publish_step(self, gains: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """Gains of this step's tokens (None: all 1)."""
        self.step_gains = gains
        self.pending_write = gains is not None or self.live

    def active(self) -> bool:
        return self.pending_write or self.live

    def begin_step(self, metadata, num_slots: int, block_size: int) -> AnchoredRows:
        """Called by every attention layer with its backend's metadata; the first of the
        step stores the step's gains at its KV slots, and the requests needing the anchored
        path are found once per metadata object (layers sharing a KV-cache group share
        it), not once per layer."""
        if not self.pending_write and metadata is self._step_metadata:
            return self.step_rows
        step = compat.step_metadata(metadata)
        if self.pending_write:
            self.pending_write = False
            self._write_slots(step.slot_mapping[:step.num_actual_tokens], num_slots, block_size)
        self._step_metadata = metadata
        requests = prefilling_requests(step)
        if requests and self.slot_gain_k is not None:
            indices = torch.tensor(requests, dtype=torch.int32).to(step.block_table.device, non_blocking=True)
            enabled = context_holds_gains(step, indices, self.block_anchored, self.slot_gain_k, self.slot_gain_v,
                                          block_size)
            self.step_rows = AnchoredRows(requests, indices, enabled, step)
        else:
            self.step_rows = NO_ROWS
        return self.step_rows

    def _write_slots(self, slot_mapping: torch.Tensor, num_slots: int, block_size: int) -> None:
        """Store the step's gains (1 where none were published) at its KV slots; padded
        rows (slot -1) write the spare slot at index num_slots, which no request reads."""
        slots = torch.where(slot_mapping >= 0, slot_mapping.long(), num_slots)
        if self.step_gains is None:
            ones = torch.ones(slots.shape[0], dtype=torch.float32, device=slots.device)
            self.store(slots, ones, ones, num_slots, block_size)
        else:
            n = slots.shape[0]
            self.store(slots, *(g[:n] for g in self.step_gains), num_slots, block_size)
            self.live = True

    def store(self, slots: torch.Tensor, gain_k: torch.Tensor, gain_v: torch.Tensor, num_slots: int,
              block_size: int) -> None:
        """Gains at KV slots (the spare slot num_slots included), and the flags of the
        blocks they touch; the caches are sized on first use (num_slots + 1 entries)."""
        if self.slot_gain_k is None or self.slot_gain_k.numel() != num_slots + 1 or self.block_size != block_size:
            self.slot_gain_k = torch.ones(num_slots + 1, dtype=torch.float32, device=slots.device)
            self.slot_gain_v = torch.ones_like(self.slot_gain_k)
            # one flag per block, the spare slot's block last
            self.block_anchored = torch.zeros(num_slots // block_size + 1, dtype=torch.bool, device=slots.device)
            self.block_size = block_size
        self.slot_gain_k.index_copy_(0, slots, gain_k.to(self.slot_gain_k))
        self.slot_gain_v.index_copy_(0, slots, gain_v.to(self.slot_gain_v))
        # recompute the touched blocks' flags from their slots ([tokens x block_size]; a block
        # touched twice gets the same flag twice)
        blocks = slots // block_size
        block_slots = (blocks[:, None] * block_size + torch.arange(block_size, device=slots.device)).clamp(
            max=num_slots)
        held = ((self.slot_gain_k[block_slots] != 1) | (self.slot_gain_v[block_slots] != 1)).any(dim=1)
        self.block_anchored.index_copy_(0, blocks, held)
