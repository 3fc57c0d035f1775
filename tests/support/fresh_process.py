"""Test files whose tests need Triton imported in one mode (compiled, or TRITON_INTERPRET=1)
when this process may already have imported it in the other: Triton reads the mode once, at
import, so such a file's tests run here when the mode matches and in a new pytest process
otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def assert_passes_in_new_process(test_file: str, env: dict[str, str], timeout: float = 900) -> None:
    """Run `test_file`'s tests in a new pytest process with `env`; they must pass (none fail)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", str(Path(test_file).resolve()), "-q", "-p",
                           "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def triton_mode(test_file: str, in_process: bool, interpret: bool, timeout: float = 900):
    """The three pieces such a file binds at module level: a mark for its tests (skipped where
    this process has the other mode), an autouse fixture that holds TRITON_INTERPRET at the
    file's mode while a test runs (for Triton modules imported lazily), and the test that runs
    the file in a new process when the mode here is the other one."""
    name = "interpreter" if interpret else "compiled"
    # compiled Triton needs a GPU: without one, the file's own CUDA mark says why it skips
    mark = pytest.mark.skipif(not in_process and (interpret or torch.cuda.is_available()),
                              reason=f"triton was imported in the other mode in this process: "
                                     f"test_in_fresh_{name}_process runs these")

    @pytest.fixture(autouse=True)
    def triton_mode_env(monkeypatch):
        if interpret:
            monkeypatch.setenv("TRITON_INTERPRET", "1")
        else:
            monkeypatch.delenv("TRITON_INTERPRET", raising=False)

    def test_in_fresh_process():
        if in_process:
            pytest.skip("the tests of this file run in this process")
        env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
        if interpret:
            env["TRITON_INTERPRET"] = "1"
        assert_passes_in_new_process(test_file, env, timeout)

    test_in_fresh_process.__name__ = f"test_in_fresh_{name}_process"
    return mark, triton_mode_env, test_in_fresh_process
