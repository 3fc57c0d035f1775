"""A server started from .venv the way a user (or `make demo`) starts it, outside the tests'
own configuration: vLLM's CPU build runs as `pip install vllm-videoanchor[cpu]` runs it
(no Triton, so Model Runner V1; the test environment's interpreted Triton is offered only to
processes that ask, tests/cpu_test_env). Every request combination a user sends answers as
stock vLLM answers it in the same environment, anchored ones say `applied`, and both servers
stay healthy. Tool calls are not sent: neither server is configured with a tool parser."""

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from utils import RemoteServer, data_url, free_port, videoanchor_server, write_mp4

from vllm_videoanchor.testing import build_tiny_model

pytestmark = pytest.mark.slow
V1_LOG = "using the V1 model runner instead"  # vLLM's line where it finds no Triton
BUDGET = 1.0  # seconds of solve budget (serve's other defaults): a 512-token reference solve exceeds it
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 8}}, "required": ["answer"],
          "additionalProperties": False}
# the variables by which the tests (tests/conftest.py) ask for the interpreted Triton and V2
TEST_ONLY = ("VIDEOANCHOR_TEST_TRITON_INTERPRETER", "VIDEOANCHOR_TEST_TRITON_HIDDEN", "TRITON_BACKENDS_IN_TREE",
             "VLLM_USE_V2_MODEL_RUNNER", "TRITON_INTERPRET", "VIDEOANCHOR_TEST_ATTENTION_BACKEND")


def user_environment() -> dict:
    env = {name: value for name, value in os.environ.items() if name not in TEST_ONLY}
    return env | {"VLLM_CPU_KVCACHE_SPACE": "1"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    root = tmp_path_factory.mktemp("user")
    model = str(build_tiny_model(root / "model"))
    common = ["--dtype", "float32", "--max-model-len", "2048", "--enforce-eager", "--limit-mm-per-prompt",
              '{"video": 1}']
    env = user_environment()
    ours = videoanchor_server(model, *common, "--anchor-solve-budget-seconds", str(BUDGET), log_path=root / "ours.log",
                              env=env)
    stock_port = free_port()
    stock = RemoteServer([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
                          "--port", str(stock_port), *common], root / "stock.log", dict(env, VLLM_PLUGINS=""),
                         stock_port)
    try:
        yield {"ours": ours.wait(), "stock": stock.wait(), "model": model,
               "video": data_url(write_mp4(root / "video.mp4", 8, 112, seed=0), "video/mp4"),  # 64 tokens
               "big_video": data_url(write_mp4(root / "big.mp4", 16, 224, seed=2), "video/mp4")}  # 512 tokens
    finally:
        ours.stop()
        stock.stop()


def test_both_servers_run_what_a_users_install_runs(servers):
    for name in ("ours", "stock"):
        assert V1_LOG in servers[name].log_path.read_text(), name


def post(server, body: dict) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/completions", json=body, timeout=300)


def streamed(server, body: dict) -> tuple[str, dict, str | None]:
    """(the text, the usage, the anchor header) of a streamed completion, read off its events."""
    text, usage = [], None
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=300) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[len("data: "):])
            text += [choice["delta"].get("content") or "" for choice in event["choices"]]
            usage = event.get("usage") or usage
        anchor = response.headers.get("x-videoanchor-anchor")
    return "".join(text), usage, anchor


TEXT = [{"role": "user", "content": "How many chairs?"}]
CASES = {
    "json_schema": {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}},
                    "max_tokens": 24},
    "regex": {"structured_outputs": {"regex": "[0-9]{3}"}, "max_tokens": 8},
    "logprobs": {"logprobs": True, "top_logprobs": 3, "max_tokens": 4},
    "prompt_logprobs": {"prompt_logprobs": 2, "max_tokens": 2},
    "n_seeded": {"n": 2, "temperature": 0.8, "seed": 7, "max_tokens": 6},
}


def comparable(response: httpx.Response) -> dict:
    """What must equal stock vLLM's: status, the choices' messages, logprobs, prompt logprobs."""
    body = response.json()
    if response.status_code != 200:
        return {"status": response.status_code}
    return {"status": 200, "choices": [(c["message"]["content"], c.get("logprobs")) for c in body["choices"]],
            "prompt_logprobs": body.get("prompt_logprobs")}


@pytest.mark.parametrize("case", CASES)
def test_plain_requests_answer_as_stock_vllm(servers, case):
    body = {"model": servers["model"], "messages": TEXT, "temperature": 0.0} | CASES[case]
    ours, stock = post(servers["ours"], body), post(servers["stock"], body)
    assert ours.status_code == 200, ours.text
    assert comparable(ours) == comparable(stock)
    if case == "json_schema":
        assert set(json.loads(ours.json()["choices"][0]["message"]["content"])) == {"answer"}
    assert ours.headers["x-videoanchor-anchor"] == "off"


def test_streaming_with_usage_answers_as_stock_vllm(servers):
    body = {"model": servers["model"], "messages": TEXT, "temperature": 0.0, "max_tokens": 6, "stream": True,
            "stream_options": {"include_usage": True}}
    ours, stock = streamed(servers["ours"], body), streamed(servers["stock"], body)
    assert ours[:2] == stock[:2] and ours[1]["completion_tokens"] == 6
    assert ours[2] == "off"


@pytest.mark.parametrize("case", ["json_schema", "regex", "logprobs", "prompt_logprobs", "n_seeded", "stream"])
def test_anchored_requests_answer_and_say_applied(servers, case):
    video = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": servers["video"]}},
                                          {"type": "text", "text": "How many chairs?"}]}]
    options = {"stream": True, "stream_options": {"include_usage": True}, "max_tokens": 4} if case == "stream" \
        else CASES[case]
    body = {"model": servers["model"], "messages": video, "temperature": 0.0, "anchor": True} | options
    if case == "stream":
        _, usage, anchor = streamed(servers["ours"], body)
        assert usage["completion_tokens"] == 4 and anchor == "applied"
        return
    response = post(servers["ours"], body)
    assert response.status_code == 200, response.text
    assert response.headers["x-videoanchor-anchor"] == "applied"
    choices = response.json()["choices"]
    assert len(choices) == CASES[case].get("n", 1)
    if case == "json_schema":  # the grammar held (a random model may still run out of tokens)
        content = choices[0]["message"]["content"]
        if choices[0]["finish_reason"] == "stop":
            assert set(json.loads(content)) == {"answer"}
        else:
            assert content.startswith("{")


def chat(server, body: dict) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    response = post(server, body)
    return response, time.perf_counter() - start


def test_a_plain_request_beside_the_heaviest_anchored_one_is_answered_within_the_budget(servers):
    """With a 1 s solve budget and serve's other limits (4096 visual tokens, max_iter up to
    10000): the heaviest solve those limits allow on this model (the reference iteration, eps
    at float32's floor, max_iter 10000, a 512-token video: about 18 s unbounded) is cut by
    the budget and says so (converged false, stopped by budget); a plain text request sent
    meanwhile answers within the budget plus 3 s (slack for a loaded machine: 3.3 s was seen with
    three test runs on two cores), far below the unbounded solve; an ordinary anchored request
    is not cut."""
    big = {"type": "video_url", "video_url": {"url": servers["big_video"]}}
    heavy = {"model": servers["model"], "temperature": 0.0, "max_tokens": 2,
             "messages": [{"role": "user", "content": [big, {"type": "text", "text": "How many chairs?"}]}],
             "anchor": {"solver_mode": "reference", "eps": 2e-7, "max_iter": 10000}}
    plain = {"model": servers["model"], "messages": TEXT, "temperature": 0.0, "max_tokens": 2}
    chat(servers["ours"], plain)  # warm
    with ThreadPoolExecutor(2) as pool:
        anchored = pool.submit(chat, servers["ours"], heavy)
        time.sleep(0.5)  # the solve is under way
        plain_response, plain_seconds = chat(servers["ours"], plain)
        response, _ = anchored.result()
    assert plain_response.status_code == 200 and plain_seconds < BUDGET + 3.0, plain_seconds
    assert response.status_code == 200, response.text
    headers = response.headers
    assert headers["x-videoanchor-anchor"] == "applied"
    assert headers["x-videoanchor-solver-converged"] == "false"
    assert headers["x-videoanchor-solver-stopped-by"] == "budget"
    assert 0 < int(headers["x-videoanchor-solver-iterations"]) < 10000
    video = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": servers["video"]}},
                                          {"type": "text", "text": "How many chairs?"}]}]
    ordinary, _ = chat(servers["ours"], {"model": servers["model"], "messages": video, "max_tokens": 2,
                                         "anchor": True})
    assert ordinary.headers["x-videoanchor-solver-converged"] == "true"
    assert ordinary.headers["x-videoanchor-solver-stopped-by"] in ("distance", "residual")


def test_both_servers_are_healthy_afterwards(servers):
    for name in ("ours", "stock"):
        assert httpx.get(servers[name].url + "/health", timeout=10).status_code == 200, name
