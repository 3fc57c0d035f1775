"""The per-request `anchor` option: parsed from mm_processor_kwargs, carried as a tensor.

A request asks for anchoring with `mm_processor_kwargs={"anchor": ...}`: absent, None or
False is off, True is the model's defaults (`MODEL_DEFAULTS`), a mapping is `AnchorParams`
fields on top of them. The parsed
parameters travel with every multimodal item as a fixed-length float64 vector (vLLM
carries per-item tensors, and all items must have the same fields): an "enabled" flag,
the fields in `AnchorParams` order (literals as their index, None as NaN), the item's place in a joint
group (group size, member index: a request's images are anchored together, as one token
set), then the item's digest (a 48-bit content hash of the item, or of the whole group, and
the option, exact in float64) under which the engine reports the solve. No vLLM import here.

The server also puts a per-request tag under REQUEST_TAG_KEY; the processor takes it out
before hashing, so it never splits caches, and uses it to tell the server which items a
request had.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping

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


def parse_anchor_option(value: object, architecture: str | None = None) -> AnchorParams | None:
    """None when anchoring is off; AnchorParams (the architecture's defaults under the given
    fields) otherwise. ValueError names the bad field."""
    if value is None or value is False:
        return None
    if value is True:
        return params_for_model(architecture)
    if isinstance(value, AnchorParams):
        return value
    if isinstance(value, Mapping):
        return params_for_model(architecture, dict(value))  # pydantic.ValidationError is a ValueError
    raise ValueError(
        f"{ANCHOR_KEY} must be true, false or an object of anchor parameters, "
        f"got {type(value).__name__}"
    )


def split_anchor_option(
    kwargs: Mapping[str, object], architecture: str | None = None
) -> tuple[AnchorParams | None, dict]:
    """The parsed option and the remaining processor kwargs (without ours)."""
    rest = {k: v for k, v in kwargs.items() if k not in (ANCHOR_KEY, REQUEST_TAG_KEY)}
    return parse_anchor_option(kwargs.get(ANCHOR_KEY), architecture), rest


def hashed_option(params: AnchorParams) -> dict:
    """The option as it enters vLLM's multimodal hash: resolved, without no-op fields."""
    return params.model_dump(mode="json", exclude=set(NO_EFFECT_FIELDS))


def encode(params: AnchorParams | None, digest: int = 0, group: tuple[int, int] = (1, 0)) -> torch.Tensor:
    """(VECTOR_SIZE,) float64: [enabled, field values..., group size, member, digest]; all
    zeros when off."""
    vector = torch.zeros(VECTOR_SIZE, dtype=torch.float64)
    if params is None:
        return vector
    vector[0] = 1.0
    vector[-3], vector[-2] = group
    vector[-1] = float(digest)
    for i, name in enumerate(FIELDS, start=1):
        value = getattr(params, name)
        choices = _literal_choices(name)
        if value is None:
            vector[i] = float("nan")
        else:
            vector[i] = choices.index(value) if choices else float(value)
    return vector


def decode(vector: torch.Tensor) -> AnchorParams | None:
    """Inverse of `encode`."""
    values = vector.double().tolist()
    if values[0] == 0.0:
        return None
    fields = {}
    for name, value in zip(FIELDS, values[1:-3]):
        choices = _literal_choices(name)
        annotation = AnchorParams.model_fields[name].annotation
        if value != value:  # NaN: an optional field left None
            fields[name] = None
        elif choices:
            fields[name] = choices[int(value)]
        elif annotation is bool:
            fields[name] = bool(value)
        elif annotation is int:
            fields[name] = int(value)
        else:
            fields[name] = float(value)
    return AnchorParams(**fields)


def item_digest(vector: torch.Tensor) -> int:
    """The digest `encode` stored (0 when the item is not anchored)."""
    return int(vector[-1].item())


def item_group(vector: torch.Tensor) -> tuple[int, int]:
    """(group size, member index) of an item: (1, 0) when it is anchored alone."""
    return int(vector[-3].item()), int(vector[-2].item())


def content_digest(*parts: torch.Tensor) -> int:
    """48-bit BLAKE2 digest of tensors' bytes (48 bits are exact in a float64)."""
    import hashlib

    hasher = hashlib.blake2b(digest_size=6)
    for part in parts:
        hasher.update(part.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return int.from_bytes(hasher.digest(), "big")
