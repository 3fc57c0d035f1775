"""Joint anchoring of a request's images: one token set, one solve (the multi-view case).

vLLM encodes items as the prefill reaches them (chunked prefill, encoder budget) and skips
cached ones, so `embed_multimodal` cannot count on seeing a request's images together.
Instead every member of an anchored multi-image request carries the whole group's encoder
inputs (under GROUP_PREFIX + key) and its place in the group (in its option vector): the
first member encoded runs the vision tower on the group, solves once, and keeps every
member's gains in a small per-process LRU; later members take theirs from it, and a miss
recomputes the same thing from the same inputs. The result never depends on scheduling.

Caches: each member's hash also covers the whole group (an image anchored with other
companions never shares caches), and a group counts as cached only when all its members
are (the processor cache evicts items one by one).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch

from .option import ANCHOR_KEY

JOINT_MODALITY = "image"
GROUP_HASH_PREFIX = "videoanchor-group-"
GROUP_PREFIX = "anchor_group_"
JOINT_CACHE_SIZE = 64  # joint solves kept per process (gains of all members)


def is_joint(modality: str, n_items: int) -> bool:
    return modality == JOINT_MODALITY and n_items > 1


def group_hashes(hashes: list[str]) -> list[str]:
    """Each member's hash combined with the whole group's."""
    group = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
    return [GROUP_HASH_PREFIX + hashlib.sha256(f"{h}\n{group}".encode()).hexdigest() for h in hashes]


class WholeGroups:
    """A processor-cache view in which a joint group is cached only if all its members are."""

    def __init__(self, cache):
        self._cache = cache

    def is_cached(self, hashes):
        cached = self._cache.is_cached(hashes)
        grouped = hashes and all(h.startswith(GROUP_HASH_PREFIX) for h in hashes)
        return [False] * len(cached) if grouped and not all(cached) else cached


def group_inputs(outputs, keys: tuple[str, ...], n_items: int) -> dict[str, torch.Tensor]:
    """The whole group's encoder inputs (exactly what embed_multimodal takes), repeated for
    every member. Items with other field sets simply go to other encoder calls."""
    group = {}
    for key in keys:
        value = outputs.get(key)
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{ANCHOR_KEY}: these images cannot be anchored together (their '{key}' "
                             "do not stack); send them in separate requests or without `anchor`")
        group[GROUP_PREFIX + key] = value.unsqueeze(0).expand(n_items, *value.shape)
    return group


def take_group_inputs(kwargs: dict) -> dict[str, torch.Tensor]:
    """Removes the group fields from embed_multimodal's kwargs: {key: per-item values}."""
    return {key[len(GROUP_PREFIX):]: kwargs.pop(key) for key in list(kwargs) if key.startswith(GROUP_PREFIX)}


def split_gains(members: list[torch.Tensor], rows: list, gain_k: torch.Tensor, gain_v: torch.Tensor) -> list:
    """Per member (gain_k, gain_v) over all its rows, from gains over the members' solver rows."""
    counts = [len(member[r]) for member, r in zip(members, rows)]
    return [spread_gains(len(member), r, k, v)
            for member, r, k, v in zip(members, rows, gain_k.split(counts), gain_v.split(counts))]


def spread_gains(n_rows: int, rows, gain_k: torch.Tensor, gain_v: torch.Tensor):
    """Gains for all rows of an item: the solver's on its visual `rows`, 1 elsewhere."""
    full_k = torch.ones(n_rows, dtype=gain_k.dtype, device=gain_k.device)
    full_v = torch.ones_like(full_k)
    full_k[rows], full_v[rows] = gain_k, gain_v
    return full_k, full_v


class JointGains:
    """digest -> gains of every member of a joint group (a small LRU per process)."""

    def __init__(self, size: int = JOINT_CACHE_SIZE):
        self.size = size
        self._entries: OrderedDict[int, list] = OrderedDict()

    def get(self, digest: int) -> list | None:
        if digest in self._entries:
            self._entries.move_to_end(digest)
            return self._entries[digest]
        return None

    def put(self, digest: int, per_member: list) -> None:
        self._entries[digest] = per_member
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
