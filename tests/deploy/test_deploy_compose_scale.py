"""The router's nginx.conf under a real nginx and prometheus.yml under a real Prometheus, with
Compose v2 on a real engine: `--profile scale --profile monitoring`, its two replicas on the CPU
image (the tiny model) in place of the GPU image, the router and Prometheus in test images of
Debian's nginx and Prometheus built on the stand-in base (registries' images cannot be pulled
here). Host networking: the copies of nginx.conf and prometheus.yml the tests mount differ from
the files only in the addresses (each replica's loopback port for `vllm-N:8000`, a loopback
listen port); everything else is the files' own. Grafana's image cannot be had here: the
dashboard keeps its static check (tests/deploy/test_docker.py), and the grafana service is left
out of this run.

Requests through the router reach both replicas (least_conn); Prometheus scrapes both, shows
the absent profiles' targets down, and answers the anchor metrics through its query API."""

import json
import time

import httpx
import pytest
import yaml
from docker_support import (
    COMPOSE_FILE,
    DOCKER_DIR,
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
from utils import data_url, free_port, metric_by_label, write_mp4

skip_unless_asked()
pytestmark = pytest.mark.slow
PROJECT = "vad-test-scale"
PROFILES = ("--profile", "scale", "--profile", "monitoring")


def replaced(text: str, replacements: dict) -> str:
    """`text` with each key replaced by its value, each key found exactly once."""
    for old, new in replacements.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def stack(engine_env, cpu_image, test_images, tmp_path_factory):
    root = tmp_path_factory.mktemp("compose-scale")
    ports = {name: free_port() for name in ("vllm-0", "vllm-1", "router", "prometheus")}
    nginx = override_file(root / "nginx.conf", replaced((DOCKER_DIR / "nginx.conf").read_text(), {
        "server vllm-0:8000": f"server 127.0.0.1:{ports['vllm-0']}",
        "server vllm-1:8000": f"server 127.0.0.1:{ports['vllm-1']}",
        "listen 8000;": f"listen 127.0.0.1:{ports['router']};"}))
    prometheus = override_file(root / "prometheus.yml", replaced((DOCKER_DIR / "prometheus.yml").read_text(), {
        '"vllm-0:8000"': f'"127.0.0.1:{ports["vllm-0"]}"', '"vllm-1:8000"': f'"127.0.0.1:{ports["vllm-1"]}"'}))
    replica = """
    image: {image}
    build: !reset null
    entrypoint: !reset null
    command: !override ["--max-model-len=4096"]
    environment: !override
      PORT: "{port}"
      HOST: 127.0.0.1
      VLLM_CPU_KVCACHE_SPACE: "1"
    volumes: !reset []
    deploy: !reset null
    ipc: !reset null
    shm_size: 2gb
    network_mode: host
    healthcheck: !override {healthcheck}
"""
    # the replicas run the CPU image: its healthcheck (on PORT), as the cpu profile's service has it
    healthcheck = json.dumps(yaml.safe_load(COMPOSE_FILE.read_text())["services"]["cpu"]["healthcheck"])
    override = override_file(root / "compose.test.yaml", f"""
services:
  vllm-0:{replica.format(image=cpu_image, port=ports["vllm-0"], healthcheck=healthcheck)}
  vllm-1:{replica.format(image=cpu_image, port=ports["vllm-1"], healthcheck=healthcheck)}
  router:
    image: {test_images["nginx"]}
    network_mode: host
    ports: !reset []
    volumes: !override ["{nginx}:/etc/nginx/nginx.conf:ro"]
  prometheus:
    image: {test_images["prometheus"]}
    network_mode: host
    ports: !reset []
    command: !override ["--web.listen-address=127.0.0.1:{ports["prometheus"]}"]
    volumes: !override ["{prometheus}:/etc/prometheus/prometheus.yml:ro", "prometheus-data:/prometheus"]
  grafana:
    profiles: !override ["grafana-not-available-here"]
""")
    env = compose_env(engine_env, VLLM_API_KEY="unused-by-the-cpu-replicas")
    files = [override]
    start = time.time()
    up = compose(env, PROJECT, *PROFILES, "up", "-d", "--no-build", "--wait", "--wait-timeout", "900",
                 files=files, check=False, timeout=1200)
    containers = {name: compose(env, PROJECT, *PROFILES, "ps", "-q", name, files=files).stdout.strip()
                  for name in ("vllm-0", "vllm-1", "router", "prometheus")}
    try:
        if up.returncode != 0:
            logs = "".join(docker(env, "logs", "--tail", "40", c, check=False).stderr for c in containers.values() if c)
            pytest.fail(f"compose up failed: {up.stderr[-3000:]}\n{logs[-6000:]}")
        report(f"compose --profile scale --profile monitoring: up after {time.time() - start:.0f} s")
        yield {"env": env, "files": files, "ports": ports, "containers": containers,
               "url": f"http://127.0.0.1:{ports['router']}",
               "prometheus": f"http://127.0.0.1:{ports['prometheus']}",
               "video": data_url(write_mp4(root / "video.mp4", 8, 112, seed=4), "video/mp4")}
    finally:
        compose(env, PROJECT, *PROFILES, "down", "-v", "--timeout", "20", files=files, check=False)


def replica_requests(stack) -> dict:
    return {name: sum(metric_by_label(f"http://127.0.0.1:{stack['ports'][name]}", "videoanchor_requests_total",
                                      "anchor").values()) for name in ("vllm-0", "vllm-1")}


def test_requests_through_nginx_reach_both_replicas(stack):
    before = replica_requests(stack)
    model = served_model(stack["url"])
    for _ in range(6):
        completion, headers = chat(stack["url"], model, None)
        assert headers["x-videoanchor-anchor"] == "off" and completion.usage.completion_tokens > 0
    _, headers = chat(stack["url"], model, stack["video"], anchor=True)
    assert headers["x-videoanchor-anchor"] == "applied"
    after = replica_requests(stack)
    served = {name: after[name] - before[name] for name in after}
    assert sum(served.values()) == 7 and min(served.values()) >= 2, served  # least_conn spreads them


def query(stack, promql: str) -> list:
    response = httpx.get(stack["prometheus"] + "/api/v1/query", params={"query": promql}, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_both_replicas_and_answers_the_anchor_metrics(stack):
    replicas = {f"127.0.0.1:{stack['ports'][name]}" for name in ("vllm-0", "vllm-1")}
    deadline = time.time() + 120  # scrape_interval 10 s
    while time.time() < deadline:
        up = {r["metric"]["instance"]: r["value"][1] for r in query(stack, "up")}
        anchored = query(stack, "sum(videoanchor_anchored_items_total)")
        requests = {r["metric"]["instance"] for r in query(stack, "videoanchor_requests_total")}
        if all(up.get(r) == "1" for r in replicas) and anchored and float(anchored[0]["value"][1]) >= 1 \
                and replicas <= requests:
            break
        time.sleep(3)
    assert {r: up.get(r) for r in replicas} == {r: "1" for r in replicas}, up
    assert {up.get(t) for t in ("vllm:8000", "cpu:8000")} == {"0"}  # the absent profiles' targets: down
    assert anchored and float(anchored[0]["value"][1]) >= 1  # the anchored request of the test before
    assert replicas <= requests
    assert query(stack, "videoanchor_solver_seconds_bucket")  # the dashboard's histogram is there


def test_down_removes_containers_and_volumes(stack):
    env = stack["env"]
    running = project_leftovers(env, PROJECT)
    assert running["volumes"] == [f"{PROJECT}_prometheus-data"] and len(running["containers"]) == 4
    assert running["networks"] == []  # host networking: compose made no network
    compose(env, PROJECT, *PROFILES, "down", "-v", "--timeout", "20", files=stack["files"])
    assert project_leftovers(env, PROJECT) == {"containers": [], "volumes": [], "networks": []}
