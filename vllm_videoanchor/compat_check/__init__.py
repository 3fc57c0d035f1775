"""Check the compatibility module's pins against a vLLM release without installing it.

    python -m vllm_videoanchor.compat_check 0.34.0             # downloads the wheel (pip, no deps)
    python -m vllm_videoanchor.compat_check --wheel vllm-0.34.0-....whl
    python -m vllm_videoanchor.compat_check --source .venv/lib/python3.11/site-packages

It reads the wheel's Python source with `ast` and never imports it (vLLM 0.34 needs a torch
that cannot be imported beside the CPU test environment's), and checks every pin of
engine/compat (its pin table) that applies to that version: names resolve, parameter names are those
`inspect.signature` would give (self, *args and **kwargs included), dataclass fields
exist (base classes in vLLM included), and sources mention what we read. The pin table is
the one `compat.pin_mismatches()` checks at run time against the installed vLLM.

Exit status 0 and "all N pins hold" when every pin holds; 1, naming each failing pin,
otherwise; 2 when the wheel cannot be had.

    vllm_source.py     the release's source, read with `ast`, and the definitions pins name in it
    static_inspect.py  what inspect would say of them: parameters, dataclass fields, source text
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ..engine import compat
from .static_inspect import dataclass_fields, signature, source_text
from .vllm_source import Found, Missing, VllmSource, lookup, member, resolve

__all__ = ["CACHE_ENV", "Found", "Missing", "VllmSource", "cache_dir", "check", "dataclass_fields", "download",
           "lookup", "main", "member", "resolve", "signature", "source_text"]

CACHE_ENV = "VIDEOANCHOR_WHEEL_CACHE"


def check(source: VllmSource, version: str) -> tuple[int, list[str]]:
    """(number of pins checked, problems) for `source`, read as vLLM `version`."""
    pins = compat.pins_for(version)
    problems = []
    for path in pins.names:
        try:
            resolve(source, path)
        except Missing as exc:
            problems.append(f"{path}: missing ({exc})")
    for path, expected in pins.methods.items():
        try:
            found = signature(source, resolve(source, path))
        except (Missing, TypeError) as exc:
            problems.append(f"{path}: missing ({exc})")
            continue
        if found != tuple(expected):
            problems.append(f"{path}: parameters {found}, pinned {tuple(expected)}")
    for path, names in pins.fields.items():
        try:
            fields = set(dataclass_fields(source, resolve(source, path)))
        except (Missing, TypeError) as exc:
            problems.append(f"{path}: missing ({exc})")
            continue
        problems += [f"{path}: no field {name!r}" for name in names if name not in fields]
    for path, snippets in pins.source.items():
        try:
            text = source_text(source, resolve(source, path))
        except Missing as exc:
            problems.append(f"{path}: missing ({exc})")
            continue
        problems += [f"{path}: no longer mentions {snippet!r}" for snippet in snippets if snippet not in text]
    return pins.count, problems


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vllm-videoanchor" / "wheels"


def download(version: str, directory: Path) -> Path:
    """vLLM's wheel of `version` (no dependencies), from `directory` or downloaded into it."""
    directory.mkdir(parents=True, exist_ok=True)
    wheels = sorted(directory.glob(f"vllm-{version}-*.whl"))
    if wheels:
        return wheels[0]
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
            f"vllm=={version}", "-d", str(directory)]
    # the Python sources are the same in every platform's wheel; Linux x86_64 always has one
    for extra in ([], ["--platform", "manylinux_2_28_x86_64", "--python-version", "3.12"]):
        result = subprocess.run(base + extra, capture_output=True, text=True)
        wheels = sorted(directory.glob(f"vllm-{version}-*.whl"))
        if wheels:
            return wheels[0]
    raise RuntimeError(f"pip download --no-deps vllm=={version} failed: {result.stderr.strip()[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vllm_videoanchor.compat_check", description=__doc__.split("\n")[0])
    parser.add_argument("version", nargs="?", help="vLLM version, e.g. 0.34.0 (default: the wheel's or source's own)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--wheel", type=Path, help="a vLLM wheel file (nothing is downloaded)")
    where.add_argument("--source", type=Path, help="a directory holding the vllm package, e.g. a site-packages")
    parser.add_argument("--cache", type=Path, default=None,
                        help=f"where downloaded wheels are kept (default: ${CACHE_ENV}, else "
                             "~/.cache/vllm-videoanchor/wheels)")
    args = parser.parse_args(argv)
    if args.wheel is None and args.source is None and args.version is None:
        parser.error("give a vLLM version, --wheel or --source")
    location = args.wheel or args.source
    if location is None:
        try:
            location = download(args.version, args.cache or cache_dir())
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 2
    if not location.exists():
        print(f"{location}: no such file or directory", file=sys.stderr)
        return 2
    source = VllmSource(location)
    if source.module("vllm") is None:
        print(f"{location}: holds no vllm package", file=sys.stderr)
        return 2
    own = source.version()
    version = args.version or own
    if version is None:
        parser.error(f"{location} does not say its version: give it")
    label = f"vLLM {version}" + (f" (its source says {own})" if own and own.split("+")[0] != version else "")
    if not compat.is_supported(version):
        print(f"note: {version} is outside the supported range {compat.SUPPORTED_RANGE}", file=sys.stderr)
    count, problems = check(source, version)
    if problems:
        print(f"{label}, {location}: {len(problems)} problem(s) in {count} pins:")
        for problem in problems:
            print(f"  FAIL {problem}")
        return 1
    print(f"{label}, {location}: all {count} pins hold")
    return 0
