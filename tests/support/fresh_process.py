"""Re-running a test file in a new pytest process, for files whose tests need Triton imported
in one mode (compiled, or TRITON_INTERPRET=1) when this process already imported it in the
other: Triton reads the mode once, at import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def assert_passes_in_new_process(test_file: str, env: dict[str, str], timeout: float = 900) -> None:
    """Run `test_file`'s tests in a new pytest process with `env`; they must pass (none fail)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", str(Path(test_file).resolve()), "-q", "-p",
                           "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
