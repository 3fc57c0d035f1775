"""The per-request `anchor` option: parsed from mm_processor_kwargs, carried as a tensor.

A request asks for anchoring with `mm_processor_kwargs={"anchor": ...}`: absent, None or
False is off, True is the model's defaults (`MODEL_DEFAULTS`), a mapping is `AnchorParams`
fields on top of them. The parsed
parameters travel with every multimodal item as an `ItemOption` (its tensor form: vLLM
carries per-item tensors), with the item's place in a joint group (a request's images are
anchored together, as one token set) and the item's digest (a 48-bit content hash of the
item, or of the whole group, and the option) under which the engine reports the solve.
No vLLM import here.

The server also puts a per-request tag under REQUEST_TAG_KEY; the processor takes it out
before hashing, so it never splits caches, and uses it to tell the server which items a
request had.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..anchor import AnchorParams, params_for_model

ANCHOR_KEY = "anchor"
REQUEST_TAG_KEY = "videoanchor_request"
FIELDS = tuple(AnchorParams.model_fields)
# fields that cannot change a result (alpha_q cancels in the softmax): kept out of the
# hash, so that requests differing only in them share caches
NO_EFFECT_FIELDS = frozenset({"alpha_q"})
VECTOR_SIZE = 4 + len(FIELDS)  # enabled, fields..., group size, member index, digest


def _literal_choices(name: str) -> tuple | None:
    annotation = AnchorParams.model_fields[name].annotation
    return typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else None


def parse_anchor_option(
    value: object, architecture: str | None = None, defaults: Mapping[str, object] | None = None
) -> AnchorParams | None:
    """None when anchoring is off; AnchorParams otherwise: the architecture's defaults, the
    deployment's `defaults` (AnchorSettings.request_defaults) and the given fields, in that
    order. ValueError names the bad field."""
    if value is None or value is False:
        return None
    if value is True:
        return params_for_model(architecture, dict(defaults or {}))
    if isinstance(value, AnchorParams):
        return value
    if isinstance(value, Mapping):  # pydantic.ValidationError is a ValueError
        return params_for_model(architecture, {**(defaults or {}), **value})
    raise ValueError(
        f"{ANCHOR_KEY} must be true, false or an object of anchor parameters, "
        f"got {type(value).__name__}"
    )


def split_anchor_option(
    kwargs: Mapping[str, object], architecture: str | None = None, defaults: Mapping[str, object] | None = None
) -> tuple[AnchorParams | None, dict]:
    """The parsed option and the remaining processor kwargs (without ours)."""
    rest = {k: v for k, v in kwargs.items() if k not in (ANCHOR_KEY, REQUEST_TAG_KEY)}
    return parse_anchor_option(kwargs.get(ANCHOR_KEY), architecture, defaults), rest


def hashed_option(params: AnchorParams) -> dict:
    """The option as it enters vLLM's multimodal hash: resolved, without no-op fields."""
    return params.model_dump(mode="json", exclude=set(NO_EFFECT_FIELDS))


@dataclass(frozen=True)
class ItemOption:
    """What one multimodal item carries to the model: its anchor parameters (None: off), its
    place in a joint group (size, member index: (1, 0) alone), and the digest under which
    the engine reports its solve. vLLM carries per-item tensors (all items of a batch with
    the same fields), so it travels as `to_tensor()`: a (VECTOR_SIZE,) float64 vector
    [enabled, field values (literals as their index, None as NaN)..., group size, member,
    digest]; all zeros when off. 48-bit digests are exact in float64."""

    params: AnchorParams | None
    group_size: int = 1
    member: int = 0
    digest: int = 0

    def with_digest(self, digest: int) -> ItemOption:
        return dataclasses.replace(self, digest=digest)

    def to_tensor(self) -> torch.Tensor:
        vector = torch.zeros(VECTOR_SIZE, dtype=torch.float64)
        if self.params is None:
            return vector
        values = [1.0, *(_field_to_float(name, getattr(self.params, name)) for name in FIELDS),
                  float(self.group_size), float(self.member), float(self.digest)]
        return torch.tensor(values, dtype=torch.float64)

    @classmethod
    def from_tensor(cls, vector: torch.Tensor) -> ItemOption:
        values = vector.double().tolist()
        if values[0] == 0.0:
            return cls(None)
        params = AnchorParams(**{name: _field_from_float(name, value) for name, value in zip(FIELDS, values[1:-3])})
        return cls(params, int(values[-3]), int(values[-2]), int(values[-1]))


def _field_to_float(name: str, value) -> float:
    if value is None:
        return float("nan")
    choices = _literal_choices(name)
    return float(choices.index(value)) if choices else float(value)


def _field_from_float(name: str, value: float):
    if value != value:  # NaN: an optional field left None
        return None
    choices = _literal_choices(name)
    if choices:
        return choices[int(value)]
    annotation = AnchorParams.model_fields[name].annotation
    return bool(value) if annotation is bool else int(value) if annotation is int else float(value)


def content_digest(*parts: torch.Tensor) -> int:
    """48-bit BLAKE2 digest of tensors' bytes (48 bits are exact in a float64)."""
    import hashlib

    hasher = hashlib.blake2b(digest_size=6)
    for part in parts:
        hasher.update(part.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return int.from_bytes(hasher.digest(), "big")
