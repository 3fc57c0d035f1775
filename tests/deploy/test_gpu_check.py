"""benchmarks/gpu_check.sh, the one command a GPU machine runs: its --smoke mode runs every step
on the CPU with tiny shapes, so a broken script is found here and not in a GPU session's few
minutes of device time."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # runs the whole GPU check script (smoke mode)
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def run_check(*args, out: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out)}
    if pythonpath is not None:
        env["PYTHONPATH"] = f"{pythonpath}:{env.get('PYTHONPATH', '')}"
    env.pop("TRITON_INTERPRET", None)  # the script sets it where it needs it
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_smoke_runs_every_step_and_writes_the_tables(tmp_path):
    """As on the device image, which has torch, Triton, SciPy and scikit-learn, maybe not
    pydantic: only the tests that need AnchorParams skip, and no step stops the next."""
    shadow = tmp_path / "shadow" / "pydantic"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no pydantic on this image')\n")
    out = tmp_path / "out"
    result = run_check("--smoke", out=out, pythonpath=shadow.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "gpu_check: passed" in result.stdout
    assert "torch" in (out / "device.txt").read_text()
    for tests in ("ssc_cuda", "kernel_anchored_prefill_cuda"):  # collected, and skipped without CUDA
        report = (out / f"test_{tests}.txt").read_text()
        assert "skipped" in report and "error" not in report.lower()
    rows = json.loads((out / "attention_kernel.json").read_text())
    assert [(r["context"], r["queries"]) for r in rows] == [(64, 64), (64, 16)]
    assert all(r["kernel_ms"] > 0 and r["sdpa_ms"] > 0 for r in rows)
    assert "| 128 | 256 | - |" in (out / "ssc.md").read_text()
    modes = (out / "ssc_modes.md").read_text()
    assert all(f"| {family} | 64 | 128 |" in modes for family in ("subspaces", "near_duplicates", "noise"))
    spectral = (out / "spectral.md").read_text()
    assert "| 64 | 64 |" in spectral and "| 300 | 64 |" in spectral  # 300: past the dense-eigh limit
    assert "| 64 | 64 |" in (out / "spectral_tf32.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_the_real_check_refuses_instead_of_passing_on_skips(tmp_path):
    result = run_check(out=tmp_path)
    assert result.returncode == 2
    assert "no CUDA device" in result.stderr and "--smoke" in result.stderr
    assert not list(tmp_path.glob("test_*.txt"))


def test_unknown_argument_is_refused(tmp_path):
    result = run_check("--fast", out=tmp_path)
    assert result.returncode == 2 and "usage: bash benchmarks/gpu_check.sh [--smoke]" in result.stderr
