"""The serving layer's request rules, without a server: what reaches vLLM, what is refused."""

import pytest

from vllm_videoanchor.anchor import AnchorParams
from vllm_videoanchor.settings import AnchorSettings, process_settings
from vllm_videoanchor_server.cli import main
from vllm_videoanchor_server.launch import MIDDLEWARE, piecewise_graph_flags, server_command
from vllm_videoanchor_server.request import RequestError, rewrite_request

VIDEO_MESSAGE = [{"role": "user", "content": [
    {"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}},
    {"type": "text", "text": "How many chairs?"}]}]
TEXT_MESSAGE = [{"role": "user", "content": "hello"}]
SETTINGS = AnchorSettings()


@pytest.fixture
def reread_settings():
    """Makes this process read its settings again (after the test set the environment), and
    again after the test."""
    yield process_settings.cache_clear
    process_settings.cache_clear()


def rewrite(settings=SETTINGS, messages=VIDEO_MESSAGE, **fields):
    return rewrite_request({"model": "m", "messages": messages, **fields}, settings, "tag1")


@pytest.mark.parametrize("fields", [{}, {"anchor": False}, {"anchor": None}])
def test_off_leaves_the_request_as_stock_vllm_would_see_it(fields):
    body, decision = rewrite(**fields)
    assert body == {"model": "m", "messages": VIDEO_MESSAGE} and not decision.applied


@pytest.mark.parametrize("fields, expected, sent", [
    ({"anchor": True}, AnchorParams(), True),
    ({"anchor": {"n_clusters": 4, "alpha_v": 0}}, AnchorParams(n_clusters=4, alpha_v=0.0),
     {"n_clusters": 4, "alpha_v": 0.0}),
    ({"mm_processor_kwargs": {"anchor": {"n_clusters": 4}}}, AnchorParams(n_clusters=4), {"n_clusters": 4}),
    ({"anchor": {"method": "kmeans", "score": "size"}}, AnchorParams(method="kmeans", score="size"),
     {"method": "kmeans", "score": "size"}),
])
def test_on_becomes_the_plugins_processor_kwargs(fields, expected, sent):
    """Only the fields the client set travel: the engine puts them over the model's defaults."""
    body, decision = rewrite(**fields)
    assert decision.applied and decision.params == expected
    assert "anchor" not in body
    assert body["mm_processor_kwargs"] == {"anchor": sent, "videoanchor_request": "tag1"}


def test_server_default_applies_only_when_the_request_is_silent():
    on = AnchorSettings(anchor_default=True)
    assert rewrite(on)[1].applied
    assert not rewrite(on, anchor=False)[1].applied


def test_text_only_requests_are_never_anchored():
    body, decision = rewrite(messages=TEXT_MESSAGE, anchor=True)
    assert not decision.applied and "mm_processor_kwargs" not in body


@pytest.mark.parametrize("fields, param, text", [
    ({"anchor": {"alpha_k": -1}}, "anchor.alpha_k", "greater than or equal to 0"),
    ({"anchor": {"n_clusters": "four"}}, "anchor.n_clusters", "valid integer"),
    ({"anchor": {"unknown": 1}}, "anchor.unknown", "Extra inputs are not permitted"),
    ({"anchor": "yes"}, "anchor", "must be true, false or an object"),
    ({"anchor": {"method": "random"}}, "anchor.method", "'ssc', 'kmeans' or 'uniform'"),
    ({"anchor": {"method": "uniform", "score": "size"}}, "anchor.score", "same score"),
    ({"anchor": {"max_iter": 10**6}}, "anchor.max_iter", "exceeds this server's limit of 10000"),
    ({"mm_processor_kwargs": {"max_pixels": 10**9}}, "mm_processor_kwargs", "only 'anchor' is accepted"),
    ({"mm_processor_kwargs": [1]}, "mm_processor_kwargs", "must be an object"),
    ({"anchor": True, "mm_processor_kwargs": {"anchor": False}}, "anchor", "with different values"),
    ({"media_io_kwargs": {"video": {"num_frames": 65}}}, "media_io_kwargs.video.num_frames", "[1, 64]"),
    ({"media_io_kwargs": {"video": {"fps": 30}}}, "media_io_kwargs.video", "only num_frames"),
    ({"media_io_kwargs": {"image": {"x": 1}}}, "media_io_kwargs", "only {\"video\""),
])
def test_bad_input_is_refused_naming_the_field(fields, param, text):
    with pytest.raises(RequestError) as error:
        rewrite(**fields)
    assert error.value.param == param and text in str(error.value)


def test_frame_count_within_the_bound_passes_through():
    body, _ = rewrite(media_io_kwargs={"video": {"num_frames": 8}})
    assert body["media_io_kwargs"] == {"video": {"num_frames": 8}}


def test_settings_round_trip_through_the_environment(monkeypatch):
    settings = AnchorSettings(anchor_default=True, max_visual_tokens=512, max_iter_limit=50, max_frames=8)
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    assert AnchorSettings() == settings


def test_serve_command_line():
    command, env = server_command(["/models/x", "--anchor-default", "on", "--anchor-max-visual-tokens",
                                   "512", "--port", "9000", "--api-key", "k1", "--max-model-len", "4096"])
    assert command[1:6] == ["-m", "vllm.entrypoints.openai.api_server", "--model", "/models/x", "--middleware"]
    assert MIDDLEWARE in command and "--trust-request-mm-kwargs" in command
    assert command[command.index("--port") + 1] == "9000" and "--max-model-len" in command
    assert command[command.index("--api-key") + 1] == "k1"
    assert env["VIDEOANCHOR_ANCHOR_DEFAULT"] == "1" and env["VIDEOANCHOR_MAX_VISUAL_TOKENS"] == "512"
    assert env["VIDEOANCHOR_API_KEYS"] == "k1"
    assert env["VIDEOANCHOR_SOLVER_BACKEND"] == "torch"
    _, env = server_command(["m", "--anchor-solver-backend", "cupy"])
    assert env["VIDEOANCHOR_SOLVER_BACKEND"] == "cupy"
    with pytest.raises(ValueError, match=r"^--anchor-max-frames: Input should be greater than or equal to 1 \(got 0\)"):
        server_command(["m", "--anchor-max-frames", "0"])


def test_a_flag_out_of_range_exits_naming_the_flag():
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "m", "--anchor-max-visual-tokens", "-1", "--anchor-max-iter-limit", "0"])
    assert exit_.value.code == (
        "vllm-videoanchor serve: error: --anchor-max-visual-tokens: Input should be greater than or equal to 0 "
        "(got -1); --anchor-max-iter-limit: Input should be greater than or equal to 1 (got 0)")


def test_serve_asks_for_piecewise_cuda_graphs_on_cuda_only():
    """FULL CUDA graphs skip the anchored attention: on CUDA the server asks vLLM for
    PIECEWISE graphs, unless the user set the compilation config; on CPU nothing changes."""
    PIECEWISE_GRAPHS = piecewise_graph_flags()
    command, _ = server_command(["m"], on_cuda=True)
    assert command[-2:] == PIECEWISE_GRAPHS
    command, _ = server_command(["m"], on_cuda=False)
    assert "--compilation-config" not in command
    for own in (["-O3"], ["-O", "3"], ["--compilation-config", "{}"], ["-cc.cudagraph_mode=FULL"],
                ["--compilation-config={}"]):
        command, _ = server_command(["m", *own], on_cuda=True)
        assert PIECEWISE_GRAPHS[1] not in command, own
    assert server_command(["m"])[0][-1] != PIECEWISE_GRAPHS[1]  # this CPU machine


def test_anchored_requests_get_400_when_the_engine_cannot_anchor(tmp_path, monkeypatch, reread_settings):
    """The engine's start-up verdict (e.g. a backend without the anchored path) turns every
    anchored request into a 400 naming it; plain requests still go through."""
    import asyncio

    import httpx

    from vllm_videoanchor.engine.solve_log import SolveLog
    from vllm_videoanchor_server.middleware import AnchorMiddleware

    path = str(tmp_path / "solves.sqlite")
    monkeypatch.setenv("VIDEOANCHOR_SOLVE_LOG", path)
    reread_settings()  # the middleware reads this process's settings once, as a server does
    reached = []

    async def engine_app(scope, receive, send):  # vLLM's server, past the middleware
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    video = {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}}
    anchored = {"model": "m", "messages": [{"role": "user", "content": [video]}], "anchor": True}
    plain = {"model": "m", "messages": [{"role": "user", "content": [video]}]}

    async def post(body):
        transport = httpx.ASGITransport(app=AnchorMiddleware(engine_app))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/v1/chat/completions", json=body)

    assert asyncio.run(post(anchored)).status_code == 200  # the engine said nothing: served
    log = SolveLog(path)
    log.record_engine("anchored attention is not available on the FLEX_ATTENTION attention backend")
    log.flush()
    response = asyncio.run(post(anchored))
    assert response.status_code == 400
    assert "FLEX_ATTENTION" in response.json()["error"]["message"]
    assert response.json()["error"]["param"] == "anchor"
    assert asyncio.run(post(plain)).status_code == 200
    assert len(reached) == 2


def test_serve_roles_of_the_disaggregated_mode_configure_vllms_ec_connector():
    import json

    for role, ec_role in (("encoder", "ec_producer"), ("decode", "ec_consumer")):
        command, _ = server_command(["m", "--anchor-role", role, "--anchor-ec-path", "/shared/ec"],
                                    on_cuda=False)
        config = json.loads(command[command.index("--ec-transfer-config") + 1])
        assert config == {"ec_connector": "ECExampleConnector", "ec_role": ec_role,
                          "ec_connector_extra_config": {"shared_storage_path": "/shared/ec"}}
    assert "--ec-transfer-config" not in server_command(["m"], on_cuda=False)[0]
    with pytest.raises(ValueError, match="--anchor-ec-path"):
        server_command(["m", "--anchor-role", "decode"], on_cuda=False)


def test_the_router_asks_the_encoder_instance_for_no_generation():
    from vllm_videoanchor_server.router import encoder_request

    body = {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}, "n": 2,
            "max_tokens": 512, "max_completion_tokens": 512, "anchor": {"alpha_k": 4.0}, "prompt_logprobs": 1}
    sent = encoder_request(body)
    assert sent == {"model": "m", "messages": [], "max_tokens": 1, "max_completion_tokens": 1,
                    "anchor": {"alpha_k": 4.0}}
    assert body["stream"] is True  # the client's request is forwarded to the decode instance unchanged


def test_serve_flags_are_generated_from_the_settings_fields():
    """A setting is declared once: its flag's name, help, choices, bounds and served default
    come from the field."""
    from vllm_videoanchor_server.launch import serve_parser
    from vllm_videoanchor_server.settings_flags import NO_FLAG, flag_name, served_defaults

    actions = {action.dest: action for action in serve_parser(served_defaults())._actions}
    for name, field in AnchorSettings.model_fields.items():
        assert (name in actions) == (name not in NO_FLAG), name
        if name in actions:
            assert actions[name].option_strings == [flag_name(name)]
            assert actions[name].help.startswith(field.description)
    assert actions["solver_backend"].choices == ("torch", "cupy")
    assert actions["assign_labels"].choices == ("discretize", "cluster_qr", "kmeans")  # an optional Literal
    assert actions["assign_labels"].option_strings == ["--anchor-assign-labels"]
    assert actions["anchor_default"].choices == ("on", "off") and actions["anchor_default"].default == "off"
    assert actions["max_frames"].help.endswith("(>= 1, default: 64)")
    assert actions["max_visual_tokens"].default == 4096 and SETTINGS.max_visual_tokens == 0  # served vs offline


def test_the_solve_log_and_api_keys_travel_as_settings():
    _, env = server_command(["m", "--anchor-solve-log", "/shared/solves.sqlite"], on_cuda=False)
    assert env["VIDEOANCHOR_SOLVE_LOG"] == "/shared/solves.sqlite"
    _, env = server_command(["m"], on_cuda=False)
    assert env["VIDEOANCHOR_SOLVE_LOG"].endswith("solves.sqlite")  # a served engine always has one
    _, env = server_command(["m", "--api-key", "k1", "k2"], on_cuda=False)
    assert AnchorSettings(api_keys=env["VIDEOANCHOR_API_KEYS"]).api_keys == ("k1", "k2")
    assert "k1" not in repr(AnchorSettings(api_keys=("k1",)))


def test_each_command_parses_its_own_arguments(capsys):
    """The command line only dispatches: what follows the command reaches it unparsed."""
    with pytest.raises(SystemExit) as exit_:
        main(["router", "--help"])
    assert exit_.value.code == 0 and "usage: vllm-videoanchor router" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "-h"])
    assert exit_.value.code == 0 and "--anchor-max-frames N" in capsys.readouterr().out


@pytest.mark.parametrize(("body", "found"), [
    ({"anchor": True}, ["anchor"]),
    ({"input": "x", "mm_processor_kwargs": {"fps": 2}, "media_io_kwargs": {}}, ["mm_processor_kwargs",
                                                                                 "media_io_kwargs"]),
    ({"messages": [[{"role": "user", "content": "hi"}]], "anchor": False}, ["anchor"]),  # a batch route's body
    ({"requests": [{"prompt": "x"}, {"prompt": "y", "mm_processor_kwargs": {}}]}, ["mm_processor_kwargs"]),
    ([{"prompt": "x", "media_io_kwargs": {"video": {"num_frames": 9}}}], ["media_io_kwargs"]),  # a list body
    ({"messages": [{"role": "user", "content": "anchor mm_processor_kwargs"}]}, []),  # words, not keys
    ({"response_format": {"json_schema": {"schema": {"properties": {"anchor": {}}}}}}, []),  # deeper: a schema
    ("not an object", []), (None, []),
])
def test_the_keys_other_routes_refuse_are_found_where_vllm_would_read_them(body, found):
    from vllm_videoanchor_server.middleware import guarded_keys

    assert guarded_keys(body) == found
