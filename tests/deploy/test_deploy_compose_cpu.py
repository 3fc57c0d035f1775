"""`docker compose --profile cpu` as documented, with Compose v2 and the image `make image-cpu`
built, on a real engine. The tests' override file changes only what host networking needs
(the port and address the server listens on, no published port, a 1 GiB KV cache): the
service's healthcheck, restart policy and command are the file's. In order: healthy within its
start period by its own healthcheck; plain and anchored video requests through the OpenAI
client (applied, the explain link answers, /metrics counted it); the server process killed,
the restart policy brings it back and it serves again; `down -v` leaves nothing behind."""

import time

import httpx
import pytest
from docker_support import (
    COMPOSE_FILE,
    chat,
    compose,
    compose_env,
    docker,
    duration,
    healthy_after,
    inspect,
    kill_main_process,
    override_file,
    project_leftovers,
    report,
    served_model,
    skip_unless_asked,
    wait_healthy,
)
from utils import data_url, free_port, metric, write_mp4

skip_unless_asked()
pytestmark = pytest.mark.slow
PROJECT = "vad-test-cpu"


@pytest.fixture(scope="module")
def stack(engine_env, cpu_image, tmp_path_factory):
    root = tmp_path_factory.mktemp("compose-cpu")
    port = free_port()
    override = override_file(root / "compose.test.yaml", f"""
services:
  cpu:
    network_mode: host
    ports: !reset []
    environment:
      PORT: "{port}"
      HOST: 127.0.0.1
      VLLM_CPU_KVCACHE_SPACE: "1"
""")
    env = compose_env(engine_env)
    files = [override]
    start = time.time()
    up = compose(env, PROJECT, "--profile", "cpu", "up", "-d", "--no-build", "--wait", "--wait-timeout", "600",
                 files=files, check=False)
    container = compose(env, PROJECT, "--profile", "cpu", "ps", "-q", "cpu", files=files).stdout.strip()
    try:
        if up.returncode != 0:
            logs = docker(env, "logs", "--tail", "80", container, check=False) if container else None
            pytest.fail(f"compose up failed: {up.stderr[-3000:]}\n{logs.stdout[-3000:] + logs.stderr[-3000:]}"
                        if logs else up.stderr[-3000:])
        report(f"compose --profile cpu: healthy after {time.time() - start:.0f} s")
        yield {"env": env, "files": files, "container": container, "url": f"http://127.0.0.1:{port}",
               "video": data_url(write_mp4(root / "video.mp4", 8, 112, seed=0), "video/mp4")}
    finally:
        compose(env, PROJECT, "--profile", "cpu", "down", "-v", "--timeout", "20", files=files, check=False)


def test_healthy_within_its_start_period_by_its_own_healthcheck(stack):
    import yaml

    service = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["cpu"]
    config = inspect(stack["env"], stack["container"])["Config"]["Healthcheck"]
    assert config["Test"] == service["healthcheck"]["test"]  # the file's check, not the test's
    after = healthy_after(stack["env"], stack["container"])
    report(f"compose --profile cpu: first passing healthcheck {after:.0f} s after the start")
    assert after <= duration(service["healthcheck"]["start_period"])


def test_plain_and_anchored_video_requests_through_the_openai_client(stack):
    url, video = stack["url"], stack["video"]
    model = served_model(url)
    anchored_before = metric(url, "videoanchor_anchored_items_total")
    plain, headers = chat(url, model, video)
    assert headers["x-videoanchor-anchor"] == "off" and plain.usage.completion_tokens > 0  # --anchor-default=off
    assert metric(url, "videoanchor_anchored_items_total") == anchored_before
    anchored, headers = chat(url, model, video, anchor={"n_clusters": 4})
    assert headers["x-videoanchor-anchor"] == "applied"
    assert int(headers["x-videoanchor-solver-iterations"]) > 0
    assert anchored.usage.prompt_tokens == plain.usage.prompt_tokens
    links = [link.strip() for link in headers["x-videoanchor-explain"].split(",")]
    assert len(links) == 1
    explained = httpx.get(url + links[0], timeout=30)
    assert explained.status_code == 200, explained.text
    anchor_map = explained.json()
    assert anchor_map["n_tokens"] > 0 and len(anchor_map["score"]) == anchor_map["n_tokens"]
    assert all(0.0 <= s <= 1.0 for s in anchor_map["score"])
    assert metric(url, "videoanchor_anchored_items_total") == anchored_before + 1
    assert metric(url, "videoanchor_solver_seconds_count") >= 1


def test_the_restart_policy_brings_a_killed_server_back(stack):
    env, container = stack["env"], stack["container"]
    assert inspect(env, container)["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    restarts = inspect(env, container)["RestartCount"]
    killed = kill_main_process(env, container)
    deadline = time.time() + 60
    while time.time() < deadline and inspect(env, container)["RestartCount"] == restarts:
        time.sleep(1)
    state = inspect(env, container)
    assert state["RestartCount"] == restarts + 1 and state["State"]["Pid"] != killed
    start = time.time()
    wait_healthy(env, container, timeout=420)
    report(f"compose --profile cpu: healthy again {time.time() - start:.0f} s after the restart")
    model = served_model(stack["url"])
    _, headers = chat(stack["url"], model, stack["video"], anchor=True)
    assert headers["x-videoanchor-anchor"] == "applied"


def test_down_removes_every_container_and_volume(stack):
    env = stack["env"]
    assert project_leftovers(env, PROJECT)["containers"] == [stack["container"]]
    assert project_leftovers(env, PROJECT)["networks"] == []  # host networking: compose made no network
    compose(env, PROJECT, "--profile", "cpu", "down", "-v", "--timeout", "20", files=stack["files"])
    assert project_leftovers(env, PROJECT) == {"containers": [], "volumes": [], "networks": []}
