"""`serve`'s --anchor-* flags, generated from AnchorSettings' fields, so that a setting is
declared once: its name gives the flag, its description the help, its type the choices
(bool: on/off, Literal: its values) and its bounds the range, checked by pydantic and
reported under the flag's name. No vLLM import here.
"""

from __future__ import annotations

import argparse
from typing import Literal, get_args, get_origin

import pydantic

from vllm_videoanchor.settings import AnchorSettings, process_settings

# settings without an --anchor-* flag: the keys come from vLLM's own --api-key (serve reads
# it and passes it on); the CPU attention kernel is a switch for the engine tests
NO_FLAG = ("api_keys",)
BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def flag_name(setting: str) -> str:
    """anchor_default -> --anchor-default, max_frames -> --anchor-max-frames."""
    return "--" + ("" if setting.startswith("anchor_") else "anchor-") + setting.replace("_", "-")


def served_defaults() -> AnchorSettings:
    """The flags' defaults: this process's environment (VIDEOANCHOR_*, e.g. from a Helm chart),
    else each field's served_default, else the field's own default."""
    from_env = process_settings()
    served = {name: field.json_schema_extra["served_default"] for name, field in AnchorSettings.model_fields.items()
              if isinstance(field.json_schema_extra, dict) and "served_default" in field.json_schema_extra}
    return from_env.model_copy(update={k: v for k, v in served.items() if k not in from_env.model_fields_set})


def _literal_values(annotation) -> tuple | None:
    """A Literal's values, also of an optional one (Literal[...] | None)."""
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    return next((get_args(arg) for arg in get_args(annotation) if get_origin(arg) is Literal), None)


def _help(field, default) -> str:
    bounds = [f"{sign} {getattr(rule, name)}" for rule in field.metadata for name, sign in BOUNDS
              if getattr(rule, name, None) is not None]
    shown = ", ".join(bounds + ([] if default is None else [f"default: {default}"]))
    return f"{field.description} ({shown})" if shown else field.description


def add_settings_flags(parser: argparse.ArgumentParser, defaults: AnchorSettings) -> None:
    """One --anchor-* flag per setting (pydantic checks the values, on/off included)."""
    for name, field in AnchorSettings.model_fields.items():
        if name in NO_FLAG:
            continue
        default = getattr(defaults, name)
        if field.annotation is bool:
            default = "on" if default else "off"
            kind = {"choices": ("on", "off")}
        elif literals := _literal_values(field.annotation):
            kind = {"choices": literals}
        elif field.annotation is int:
            kind = {"type": int, "metavar": "N"}  # not a number: argparse's own error, exit 2
        else:
            kind = {}
        parser.add_argument(flag_name(name), dest=name, default=default, help=_help(field, default), **kind)


def settings_from_flags(args: argparse.Namespace, defaults: AnchorSettings, **more) -> AnchorSettings:
    """The settings the flags (and `more`) give; ValueError naming the flag of any value out of range."""
    flags = {name: getattr(args, name) for name in AnchorSettings.model_fields if name not in NO_FLAG}
    try:
        return AnchorSettings(**{**defaults.model_dump(), **flags, **more})
    except pydantic.ValidationError as exc:  # say which flag, as argparse would
        raise ValueError("; ".join(f"{flag_name(error['loc'][0])}: {error['msg']} (got {error['input']!r})"
                                   for error in exc.errors())) from None
