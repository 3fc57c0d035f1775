"""`docker compose --profile disagg-cpu` with Compose v2 on a real engine: the encoder, the
prefill/decode instance and the router (the CPU image, the tiny model), sharing the `ec` volume.
The override file gives each a loopback port (host networking) and points the router at them;
roles, volume, solve log and healthchecks are the file's. Encoder, decode and router healthy;
an anchored video through the router is anchored, and its response says so; text is served;
`down -v` removes the containers and the shared volume."""

import time

import pytest
from docker_support import (
    chat,
    compose,
    compose_env,
    docker,
    override_file,
    project_leftovers,
    report,
    served_model,
    skip_unless_asked,
)
from utils import data_url, free_port, metric, write_mp4

skip_unless_asked()
pytestmark = pytest.mark.slow
PROJECT = "vad-test-disagg"
SERVICES = ("epd-cpu-encoder", "epd-cpu-decode", "epd-cpu-router")


@pytest.fixture(scope="module")
def stack(engine_env, cpu_image, tmp_path_factory):
    root = tmp_path_factory.mktemp("compose-disagg")
    ports = {name: free_port() for name in SERVICES}
    server = """
    network_mode: host
    environment:
      PORT: "{port}"
      HOST: 127.0.0.1
      VLLM_CPU_KVCACHE_SPACE: "1"
"""
    override = override_file(root / "compose.test.yaml", f"""
services:
  epd-cpu-encoder:{server.format(port=ports["epd-cpu-encoder"])}
  epd-cpu-decode:{server.format(port=ports["epd-cpu-decode"])}
  epd-cpu-router:
    network_mode: host
    ports: !reset []
    environment:
      PORT: "{ports["epd-cpu-router"]}"
    command: !override ["--encoder", "http://127.0.0.1:{ports["epd-cpu-encoder"]}",
                        "--decode", "http://127.0.0.1:{ports["epd-cpu-decode"]}",
                        "--host", "127.0.0.1", "--port", "{ports["epd-cpu-router"]}"]
""")
    env = compose_env(engine_env)
    files = [override]
    start = time.time()
    up = compose(env, PROJECT, "--profile", "disagg-cpu", "up", "-d", "--no-build", "--wait", "--wait-timeout", "900",
                 files=files, check=False, timeout=1200)
    containers = {name: compose(env, PROJECT, "--profile", "disagg-cpu", "ps", "-q", name, files=files)
                  .stdout.strip() for name in SERVICES}
    try:
        if up.returncode != 0:
            logs = "".join(docker(env, "logs", "--tail", "40", c, check=False).stderr for c in containers.values() if c)
            pytest.fail(f"compose up failed: {up.stderr[-3000:]}\n{logs[-6000:]}")
        report(f"compose --profile disagg-cpu: all healthy after {time.time() - start:.0f} s")
        yield {"env": env, "files": files, "containers": containers,
               "urls": {name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
               "video": data_url(write_mp4(root / "video.mp4", 8, 112, seed=3), "video/mp4")}
    finally:
        compose(env, PROJECT, "--profile", "disagg-cpu", "down", "-v", "--timeout", "20", files=files, check=False)


def test_encoder_decode_and_router_are_healthy(stack):
    from docker_support import inspect

    for name, container in stack["containers"].items():
        state = inspect(stack["env"], container)["State"]
        assert state["Running"] and state["Health"]["Status"] == "healthy", (name, state)


def test_an_anchored_video_through_the_router_is_anchored_and_says_so(stack):
    urls = stack["urls"]
    router, encoder, decode = urls["epd-cpu-router"], urls["epd-cpu-encoder"], urls["epd-cpu-decode"]
    model = served_model(router)
    solved_before = metric(encoder, "videoanchor_solver_seconds_count")
    completion, headers = chat(router, model, stack["video"], anchor=True)
    assert headers["x-videoanchor-anchor"] == "applied"
    assert float(headers["x-videoanchor-solver-seconds"]) > 0  # the encoder's solve, reported by decode
    assert completion.usage.completion_tokens > 0
    assert metric(encoder, "videoanchor_solver_seconds_count") == solved_before + 1  # solved on the encoder
    assert metric(decode, "videoanchor_solver_seconds_count") == 0  # never on the decode instance


def test_text_requests_are_served_through_the_router(stack):
    router = stack["urls"]["epd-cpu-router"]
    completion, headers = chat(router, served_model(router), None, anchor=True)
    assert headers["x-videoanchor-anchor"] == "off" and completion.usage.completion_tokens > 0


def test_down_removes_the_containers_and_the_shared_volume(stack):
    env = stack["env"]
    running = project_leftovers(env, PROJECT)
    assert running["volumes"] == [f"{PROJECT}_ec"] and len(running["containers"]) == 3
    assert running["networks"] == []  # host networking: compose made no network
    compose(env, PROJECT, "--profile", "disagg-cpu", "down", "-v", "--timeout", "20", files=stack["files"])
    assert project_leftovers(env, PROJECT) == {"containers": [], "volumes": [], "networks": []}
