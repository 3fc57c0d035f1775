"""Helpers the tests share: server processes, media files, metric scraping, and running vLLM's
engine in its own process (the scripts beside this module, in tests/support/, print one
`RESULTS <json>` line). pyproject's pytest `pythonpath` puts tests/support on sys.path, so every
test module, in whichever tests/ subfolder, imports these helpers by name."""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from vllm_videoanchor.testing.engine_run import parse_results

SUPPORT = Path(__file__).resolve().parent
ENGINE_SCRIPT = SUPPORT / "engine_script.py"
PARALLEL_SCRIPT = SUPPORT / "parallel_script.py"
TINY_SCRIPT = SUPPORT / "tiny_script.py"
# the console script of this environment's vllm-videoanchor
VLLM_VIDEOANCHOR = str(Path(sys.executable).with_name("vllm-videoanchor"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RemoteServer:
    """A server process: started at construction, waited for (/health) on `with` or `wait()`,
    stopped on leaving the `with` or by `stop()`.

        with RemoteServer([...command..., "--port", str(port)], log_path, env, port) as server:
            httpx.get(server.url + "/v1/models")

    Several can start side by side: construct them all, then `wait()` for each.
    """

    def __init__(self, command, log_path: Path, env: dict | None = None, port: int | None = None,
                 timeout: float = 300):
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        self.timeout = timeout
        self.finished: subprocess.CompletedProcess | None = None
        self.process = subprocess.Popen([str(c) for c in command], env=env, stdout=self.log_path.open("w"),
                                        stderr=subprocess.STDOUT)

    def wait(self):
        """Returns self once /health answers; fails the test with the log's tail otherwise."""
        deadline = time.time() + self.timeout
        while time.time() < deadline and self.process.poll() is None:
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        pytest.fail(f"server did not start:\n{self.log_path.read_text()[-4000:]}")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def __enter__(self):
        return self.wait()

    def __exit__(self, *exc_info):
        self.stop()


def videoanchor_server(model, *args, log_path: Path, env: dict | None = None) -> RemoteServer:
    """`vllm-videoanchor serve MODEL --port P ARGS...` on a free port, with a 1 GiB CPU KV cache."""
    port = free_port()
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1") if env is None else env
    return RemoteServer([VLLM_VIDEOANCHOR, "serve", str(model), "--port", str(port), *args], log_path, env, port)


def _url(server) -> str:
    return server if isinstance(server, str) else server.url


def metric(server, name: str) -> float:
    """The value of sample `name` (with its labels, as the exposition writes them) on the
    server's (or base URL's) /metrics; 0.0 if it is absent."""
    text = httpx.get(_url(server) + "/metrics", timeout=10).text
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def metric_by_label(server, name: str, label: str) -> dict[str, float]:
    """{label value: sample value} of metric `name` with the single label `label`."""
    text = httpx.get(_url(server) + "/metrics", timeout=10).text
    pattern = rf'^{re.escape(name)}\{{{re.escape(label)}="(\w+)"\}} ([0-9.e+]+)$'
    return {value: float(sample) for value, sample in re.findall(pattern, text, re.M)}


def write_mp4(path: Path, frames: int, size: int, seed: int) -> Path:
    """An mp4 (2 fps) of `frames` random `size` x `size` frames."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 2.0, (size, size))
    rng = np.random.default_rng(seed)
    for _ in range(frames):
        writer.write(rng.uniform(0, 255, (size, size, 3)).astype(np.uint8))
    writer.release()
    return path


def data_url(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def read_results(out: subprocess.CompletedProcess, tail: int = 4000):
    """The JSON of a finished script's `RESULTS ` line; fails with its stderr's tail if it failed."""
    assert out.returncode == 0, out.stderr[-tail:]
    results = parse_results(out.stdout)
    assert results is not None, out.stdout[-tail:]
    return results


class Background:
    """A command started at construction, its output going to files (not pipes: a process
    nobody reads yet must not block on a full pipe); `completed()` waits for it (once) and
    gives what subprocess.run would have. Several can run side by side."""

    def __init__(self, command, env: dict | None = None, timeout: float = 900):
        self.command = [str(c) for c in command]
        self.deadline = time.time() + timeout
        self.finished: subprocess.CompletedProcess | None = None
        self.stdout, self.stderr = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(self.command, env=env, stdout=self.stdout, stderr=self.stderr, text=True)

    def completed(self) -> subprocess.CompletedProcess:
        if self.finished is None:
            try:
                self.process.wait(timeout=max(1.0, self.deadline - time.time()))
            finally:
                self.stop()
            output = []
            for file in (self.stdout, self.stderr):
                file.seek(0)
                output.append(file.read())
                file.close()
            self.finished = subprocess.CompletedProcess(self.command, self.process.returncode, *output)
        return self.finished

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class EngineProcess(Background):
    """tests/support/engine_script.py on `model`, started at construction in its own process
    (VLLM_PLUGINS=`plugins` if given, `env` on top of this environment); `results()` waits
    for it."""

    def __init__(self, model, *args, plugins=None, env=None, timeout=900):
        env = dict(os.environ, **(env or {}))
        if plugins is not None:
            env["VLLM_PLUGINS"] = plugins
        super().__init__([sys.executable, ENGINE_SCRIPT, model, *args], env, timeout)

    def results(self):
        """Its results; fails as read_results does if the script failed."""
        return read_results(self.completed())


class EnginePool:
    """Engine processes started in the order submitted, at most `slots` at a time (an engine
    process keeps about one core busy: two of them use a 2-core machine), so that the ones
    a module's later tests read run while its first tests check theirs.

        pool = EnginePool(2)
        later = pool.submit(model, "--plain-only", plugins="")   # EngineProcess arguments
        later.results()                                           # waits for start and end
        pool.stop()                                               # kills what still runs
    """

    def __init__(self, slots: int = 2):
        self._slots = threading.Semaphore(slots)
        self._queue: list[_PoolJob] = []
        self._lock = threading.Condition()
        self._stopped = False
        self._started: list[_PoolJob] = []
        self._thread = threading.Thread(target=self._start_forever, name="engine-pool", daemon=True)
        self._thread.start()

    def submit(self, *args, **kwargs) -> _PoolJob:
        job = _PoolJob(args, kwargs)
        with self._lock:
            self._queue.append(job)
            self._lock.notify()
        return job

    def stop(self):
        with self._lock:
            self._stopped = True
            pending, self._queue = self._queue, []
            self._lock.notify()
        for job in pending:
            job.cancel()
        for job in self._started:
            job.process.stop()

    def _start_forever(self):
        while True:
            self._slots.acquire()
            with self._lock:
                while not self._queue and not self._stopped:
                    self._lock.wait()
                if self._stopped:
                    self._slots.release()
                    return
                job = self._queue.pop(0)
            try:
                job.process = EngineProcess(*job.args, **job.kwargs)
            except Exception as exc:  # noqa: BLE001 - reported by the job's results()
                job.error = exc
                self._slots.release()
            else:
                self._started.append(job)
                threading.Thread(target=self._release_when_done, args=(job.process,), daemon=True).start()
            job.started.set()

    def _release_when_done(self, process):
        process.process.wait()
        self._slots.release()


class _PoolJob:
    def __init__(self, args, kwargs):
        self.args, self.kwargs = args, kwargs
        self.started = threading.Event()
        self.process: EngineProcess | None = None
        self.error: Exception | None = None

    def cancel(self):
        self.error = RuntimeError("the engine pool stopped before this engine started")
        self.started.set()

    def results(self):
        self.started.wait()
        if self.error is not None:
            raise self.error
        return self.process.results()


# Subprocesses a module starts when the session starts (conftest.py calls its
# `start_in_background()` if any of its tests is selected), so that they run while the
# modules before it do: {module name: what start_in_background returned}.
STARTED_EARLY: dict = {}


def started_early(module, start):
    """What `module`'s start_in_background() returned at session start, or start() now (the
    module's fixture calls this; a test run of that module alone starts them here)."""
    started = STARTED_EARLY.pop(module.__name__, None)
    return started if started is not None else start()


def run_engine(model, *args, plugins=None, env=None, timeout=900):
    """tests/support/engine_script.py on `model` in its own process (VLLM_PLUGINS=`plugins` if given,
    `env` on top of this environment): its results."""
    return EngineProcess(model, *args, plugins=plugins, env=env, timeout=timeout).results()
