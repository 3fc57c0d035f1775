"""The pin table resolved for one vLLM release, and checked against the installed vLLM.

`pins_for` is shared by the run-time check below and the static one
(vllm_videoanchor/compat_check/), so both check the same pins for a release.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

from .pin_table import PINNED_FIELDS, PINNED_METHODS, PINNED_NAMES, PINNED_SOURCE
from .versions import Versions, installed_version


@dataclasses.dataclass(frozen=True)
class Pins:
    """The pins that apply to one vLLM release."""

    names: tuple[str, ...]
    methods: dict[str, tuple[str, ...]]
    fields: dict[str, tuple[str, ...]]
    source: dict[str, tuple[str, ...]]

    @property
    def count(self) -> int:
        return len(self.names) + len(self.methods) + len(self.fields) + len(self.source)


def pins_for(version: str) -> Pins:
    """Every pin of the tables (pin_table.py) as it applies to vLLM `version`."""

    def applying(table):
        resolved = {path: pin.at(version) if isinstance(pin, Versions) else pin for path, pin in table.items()}
        return {path: pin for path, pin in resolved.items() if pin is not None}

    return Pins(tuple(applying(PINNED_NAMES)), applying(PINNED_METHODS), applying(PINNED_FIELDS),
                applying(PINNED_SOURCE))


def resolve(path: str):
    """The object named "module:Attr.attr" (or the module, for "module")."""
    module, _, qualname = path.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split(".") if qualname else ():
        obj = getattr(obj, part)
    return obj


def _optional_package_missing(exc: Exception) -> bool:
    """An import that failed on a package vLLM imports only where it is installed (e.g.
    flashinfer on CPU builds): that pin cannot be checked here (compat_check reads it)."""
    return isinstance(exc, ModuleNotFoundError) and not (exc.name or "vllm").split(".")[0] == "vllm"


def pin_mismatches(version: str | None = None) -> list[str]:
    """What in the installed vLLM differs from the pins for `version` (by default the
    installed one's); empty when all hold. compat_check checks the same pins statically."""
    pins = pins_for(version or installed_version())
    problems = []

    def resolved(path):
        try:
            return resolve(path)
        except (ImportError, AttributeError, KeyError) as exc:
            if not _optional_package_missing(exc):
                problems.append(f"{path}: missing ({exc})")
            return None

    for path in pins.names:
        resolved(path)
    for path, expected in pins.methods.items():
        if (obj := resolved(path)) is None:
            continue
        found = tuple(inspect.signature(obj).parameters)
        if found != tuple(expected):
            problems.append(f"{path}: parameters {found}, pinned {tuple(expected)}")
    for path, names in pins.fields.items():
        if (obj := resolved(path)) is None:
            continue
        try:
            fields = {f.name for f in dataclasses.fields(obj)}
        except TypeError as exc:
            problems.append(f"{path}: missing ({exc})")
            continue
        problems += [f"{path}: no field {name!r}" for name in names if name not in fields]
    for path, snippets in pins.source.items():
        if (obj := resolved(path)) is None:
            continue
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError) as exc:
            problems.append(f"{path}: missing ({exc})")
            continue
        problems += [f"{path}: no longer mentions {snippet!r}" for snippet in snippets if snippet not in source]
    return problems
