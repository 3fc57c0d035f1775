"""The CPU image and the compose file with a real Docker engine and Compose v2 (`make
test-deploy`; tests/deploy/docker_support.py says how the engine, the images and compose are
had). Here: every profile's `config` with exactly the variables the file's comment names, the
GPU servers' key check, and `docker run` of the image built by `make image-cpu` serving the
tiny model, anchored."""

import json
import os
import re
import subprocess
import time

import pytest
from docker_support import (
    COMPOSE,
    COMPOSE_FILE,
    COMPOSE_VARIABLES,
    chat,
    compose,
    compose_env,
    docker,
    inspect,
    project_leftovers,
    report,
    served_model,
    skip_unless_asked,
    wait_healthy,
)
from utils import data_url, free_port, write_mp4

skip_unless_asked()
pytestmark = pytest.mark.slow


def documented_profiles():
    """{profile: the variables its command in the file's header comment is run with}."""
    header = COMPOSE_FILE.read_text().split("\nname:")[0]
    found = re.findall(r"^#\s+((?:\w+=\.\.\. )*)docker compose -f docker/compose\.yaml --profile (\S+) up -d",
                       header, re.M)
    return {profile: re.findall(r"(\w+)=", variables) for variables, profile in found}


def test_the_header_documents_every_profile_and_its_variables():
    profiles = documented_profiles()
    assert profiles == {"gpu": ["VLLM_API_KEY"], "cpu": [], "scale": ["VLLM_API_KEY"],
                        "disagg": ["VLLM_API_KEY"], "disagg-cpu": []}
    assert "VLLM_API_KEY" in COMPOSE_VARIABLES and os.access(COMPOSE, os.X_OK)


@pytest.mark.parametrize("profile", ["gpu", "cpu", "scale", "disagg", "disagg-cpu", "monitoring"])
def test_each_profile_resolves_with_exactly_the_variables_its_comment_names(profile, tmp_path):
    needed = documented_profiles().get(profile, [])  # monitoring is added to another profile: none of its own
    env = compose_env(dict(os.environ), **{name: f"value-of-{name.lower()}" for name in needed})
    out = compose(env, "vad-config", "--profile", profile, "config", "--format", "json")
    services = json.loads(out.stdout)["services"]
    assert services and all(profile in s["profiles"] for s in services.values())
    for name, service in services.items():
        if "VLLM_API_KEY" in service.get("environment", {}):
            assert service["environment"]["VLLM_API_KEY"] == ("value-of-vllm_api_key" if needed else ""), name


def test_compose_v2_config_fails_on_a_broken_file(tmp_path):
    """The pinned binary reports a failing `config` with its exit status (the package's console
    script does not): the checks above can fail."""
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  x:\n    image: a\n    environment:\n      K: ${NEEDED:?set NEEDED}\n")
    out = subprocess.run([COMPOSE, "-f", broken, "config"], env=compose_env(dict(os.environ)),
                         capture_output=True, text=True)
    assert out.returncode != 0 and "NEEDED" in out.stderr


def test_gpu_servers_refuse_to_start_without_an_api_key(engine_env, cpu_image, tmp_path):
    """The key is checked when a GPU server starts (Compose v2 interpolates every profile, so
    `${VLLM_API_KEY:?}` would stop the CPU profiles too). The five GPU servers' containers are
    created by compose (the CPU image standing in for the GPU one, no devices, no network):
    each entrypoint, as the engine holds it, exits 64 and says why without a key, in a real
    container, and runs `serve` with the server's arguments with one (sh, a stand-in
    `vllm-videoanchor` on PATH: no GPU model can be served here)."""
    servers = ("vllm", "vllm-0", "vllm-1", "epd-encoder", "epd-decode")
    stand_in = "".join(f"""
  {name}:
    image: {cpu_image}
    build: !reset null
    deploy: !reset null
    ports: !reset []
    volumes: !reset []
    ipc: !reset null
    shm_size: 64m
    network_mode: none
    restart: "no"
""" for name in servers)
    override = tmp_path / "compose.test.yaml"
    override.write_text("services:" + stand_in)
    profiles = ("--profile", "gpu", "--profile", "scale", "--profile", "disagg")
    env = compose_env(engine_env)
    project = "vad-test-key"
    compose(env, project, *profiles, "create", "--no-build", *servers, files=[override])
    try:
        fake = tmp_path / "vllm-videoanchor"
        fake.write_text('#!/bin/sh\necho "ran: $*"\n')
        fake.chmod(0o755)
        for name in servers:
            container = compose(env, project, *profiles, "ps", "-a", "-q", name, files=[override]).stdout.strip()
            config = inspect(env, container)["Config"]
            assert "VLLM_API_KEY" not in " ".join(config["Env"]).replace("VLLM_API_KEY=", ""), name
            if name == "vllm":
                docker(env, "start", "-a", container, check=False, timeout=120)
                state = inspect(env, container)["State"]
                logs = docker(env, "logs", container).stderr
                assert state["ExitCode"] == 64 and "VLLM_API_KEY is required" in logs, (state, logs)
            command = config["Entrypoint"] + config["Cmd"]
            path = f"{tmp_path}{os.pathsep}{os.environ['PATH']}"
            refused = subprocess.run(command, env={"PATH": path, "VLLM_API_KEY": ""}, capture_output=True, text=True)
            assert refused.returncode == 64 and "VLLM_API_KEY is required" in refused.stderr, name
            started = subprocess.run(command, env={"PATH": path, "VLLM_API_KEY": "k"}, capture_output=True, text=True)
            assert started.returncode == 0, (name, started)
            assert started.stdout.split()[:3] == ["ran:", "serve", "Qwen/Qwen2.5-VL-7B-Instruct"], started.stdout
            assert "--port=8000" in started.stdout.split()
    finally:
        compose(env, project, *profiles, "down", "-v", files=[override], check=False)
    assert project_leftovers(env, project) == {"containers": [], "volumes": [], "networks": []}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return data_url(write_mp4(tmp_path_factory.mktemp("media") / "video.mp4", 8, 112, seed=0), "video/mp4")


def test_the_image_has_no_wheelhouse_and_a_compiler(engine_env, cpu_image):
    probe = docker(engine_env, "run", "--rm", "--network", "none", "--entrypoint", "sh", cpu_image, "-c",
                   "test ! -e /wheels && command -v g++ && python -c 'import sysconfig, os; "
                   "print(os.path.exists(os.path.join(sysconfig.get_paths()[\"include\"], \"Python.h\")))'")
    assert probe.stdout.split()[-1] == "True"  # inductor's C++ wrappers compile here
    history = docker(engine_env, "history", "--no-trunc", "--format", "{{.CreatedBy}}", cpu_image).stdout
    assert "/wheels" not in history  # the wheelhouse was the builder stage's alone


def test_docker_run_serves_the_tiny_model_and_anchors_a_video(engine_env, cpu_image, video):
    """As a user would after `make image-cpu`: `docker run` of the image (host networking on a
    loopback port here), healthy by the image's own healthcheck, an anchored video request applied."""
    port = free_port()
    name = f"vad-run-{port}"
    docker(engine_env, "run", "-d", "--name", name, "--network", "host", "--shm-size", "2g", "-e", f"PORT={port}",
           "-e", "HOST=127.0.0.1", "-e", "VLLM_CPU_KVCACHE_SPACE=1", cpu_image)
    try:
        start = time.time()
        wait_healthy(engine_env, name, timeout=420)
        report(f"docker run: healthy after {time.time() - start:.0f} s")
        url = f"http://127.0.0.1:{port}"
        model = served_model(url)
        assert model == "/models/tiny"  # the embedded tiny model: no weights downloaded
        completion, headers = chat(url, model, video, anchor=True)
        assert headers["x-videoanchor-anchor"] == "applied"
        assert completion.choices[0].message.content is not None and completion.usage.prompt_tokens > 16
        assert float(headers["x-videoanchor-solver-seconds"]) > 0
    finally:
        docker(engine_env, "rm", "-f", name, check=False)
    assert docker(engine_env, "ps", "-a", "-q", "--filter", f"name={name}").stdout.strip() == ""


def test_health_probe_of_the_image_fails_when_nothing_listens(engine_env, cpu_image):
    """The image's HEALTHCHECK command itself: non-zero where no server answers on PORT."""
    port = free_port()
    check = inspect(engine_env, cpu_image)["Config"]["Healthcheck"]["Test"]
    assert check[0] == "CMD"
    out = docker(engine_env, "run", "--rm", "--network", "host", "-e", f"PORT={port}", "--entrypoint", check[1],
                 cpu_image, *check[2:], check=False, timeout=120)
    assert out.returncode != 0 and "Connection refused" in out.stderr
