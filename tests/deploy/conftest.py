"""Session fixtures of the Docker deployment tests (tests/deploy/test_deploy_*.py, `make
test-deploy`): the engine, the CPU image and the test images. Unused, and so free, in `make test`."""

import time

import docker_support
import pytest
from docker_support import IMAGE, NGINX, PROMETHEUS, ROOT, STANDIN, Engine, docker, report, run


def pytest_terminal_summary(terminalreporter):
    if docker_support.REPORTED:
        terminalreporter.section("deployment timings and sizes")
        for line in docker_support.REPORTED:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def engine_env():
    """The environment in which `docker` reaches an engine (started here where none answers)."""
    engine = Engine()
    why = engine.start()
    if why is not None:
        pytest.skip(f"no Docker engine can be started here: {why}")
    try:
        yield engine.env
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def cpu_image(engine_env):
    """vllm-videoanchor:0.1.0-cpu, built by `make image-cpu` (layers cached by the engine)."""
    start = time.time()
    made = run(["make", "--no-print-directory", "image-cpu"], engine_env, timeout=2400, check=False, cwd=ROOT)
    assert made.returncode == 0, (made.stdout + made.stderr)[-5000:]
    size = int(docker(engine_env, "image", "inspect", "-f", "{{.Size}}", IMAGE).stdout)
    report(f"make image-cpu: {time.time() - start:.0f} s, {IMAGE} {size / 1e9:.2f} GB; "
           + " | ".join(line for line in made.stdout.splitlines() if line.startswith("image-cpu:")))
    return IMAGE


@pytest.fixture(scope="session")
def test_images(engine_env):
    """Debian's nginx and Prometheus on the stand-in base (registries' images cannot be pulled here)."""
    run(["sh", ROOT / "docker/standin-base.sh", STANDIN], engine_env, timeout=1200)
    images = ROOT / "tests/deploy/images"
    for tag, dockerfile in ((NGINX, "Dockerfile.nginx"), (PROMETHEUS, "Dockerfile.prometheus")):
        run(["docker", "build", "--network", "host", "--build-arg", f"BASE_IMAGE={STANDIN}", "-f",
             images / dockerfile, "-t", tag, images], dict(engine_env, DOCKER_BUILDKIT="0"), timeout=1200)
    return {"nginx": NGINX, "prometheus": PROMETHEUS}
