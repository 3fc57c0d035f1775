"""The media URL policy, the `anchor` schema and the max_iter default without a server (the
served behaviour: test_server_api_surface.py): which hosts pass, that the compose and Helm
files refuse internal ones, that `serve --media-urls` reaches the server's environment."""

from pathlib import Path

import pytest
import yaml

from vllm_videoanchor.settings import AnchorSettings
from vllm_videoanchor_server.launch import server_command
from vllm_videoanchor_server.media import check_media_urls, media_urls
from vllm_videoanchor_server.openapi import anchor_field
from vllm_videoanchor_server.request import RequestError, parse_anchor

ROOT = Path(__file__).resolve().parents[2]


def test_public_and_data_urls_pass_the_check():
    """The check alone (no fetch: this machine reaches no public host): public addresses and
    data URLs pass, the refusals name the field."""
    def body(url):
        return {"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}}]}]}

    for url in ("http://8.8.8.8/v.mp4", "https://[2001:4860:4860::8888]/v.mp4", "data:video/mp4;base64,AAAA"):
        check_media_urls(body(url), "public", local_media=False)
    check_media_urls(body("http://127.0.0.1/v.mp4"), "any", local_media=False)  # vLLM's own rules
    check_media_urls(body("file:///data/v.mp4"), "public", local_media=True)  # vLLM checks the directory
    with pytest.raises(RequestError, match="public hosts only"):
        check_media_urls({"input": [{"content": [{"image_url": "http://100.64.1.1/a.png"}]}]}, "public", False)

def test_the_deployment_defaults_refuse_internal_media_urls():
    compose = yaml.safe_load((ROOT / "docker/compose.yaml").read_text())
    servers = {name: s for name, s in compose["services"].items()  # every server; routers fetch nothing
               if s.get("image", "").startswith("vllm-videoanchor") and "router" not in (s.get("entrypoint") or [])}
    assert {"vllm", "cpu", "epd-encoder", "epd-decode", "epd-cpu-encoder"} <= set(servers)
    for name, service in servers.items():
        assert service["environment"]["VIDEOANCHOR_MEDIA_URLS"] == "${MEDIA_URLS:-public}", name
    values = yaml.safe_load((ROOT / "deploy/production-stack-values.yaml").read_text())
    for spec in values["servingEngineSpec"]["modelSpec"]:
        env = {item["name"]: item["value"] for item in spec["env"]}
        assert env["VIDEOANCHOR_MEDIA_URLS"] == "public" and env["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] == "0"


def test_every_url_field_of_every_route_is_found():
    body = {"messages": [{"content": [{"type": "image_url", "image_url": {"url": "u1"}},
                                      {"type": "video_url", "video_url": {"url": "u2"}}]}],
            "input": [{"content": [{"type": "input_image", "image_url": "u3"}]}],
            "system": [{"type": "image", "source": {"type": "url", "url": "u4"}}], "text": "http://10.0.0.1/"}
    assert [url for _, url in media_urls(body)] == ["u1", "u2", "u3", "u4"]  # text is not a media URL
    assert dict(media_urls(body))["messages.0.content.1.video_url.url"] == "u2"


@pytest.mark.parametrize("url", ["http://[fe80::1%25eth0]/v.mp4", "http://[fc00::1]/v.mp4", "https://224.0.0.1/",
                                 "http://192.0.2.1/"])
def test_other_non_global_addresses_are_refused(url):
    with pytest.raises(RequestError, match="public hosts only"):
        check_media_urls({"video_url": {"url": url}}, "public", local_media=False)


def test_serve_passes_the_policy_and_turns_redirects_off(monkeypatch):
    monkeypatch.delenv("VIDEOANCHOR_MEDIA_URLS", raising=False)
    monkeypatch.delenv("VLLM_MEDIA_URL_ALLOW_REDIRECTS", raising=False)
    _, env = server_command(["m"], on_cuda=False)
    assert env["VIDEOANCHOR_MEDIA_URLS"] == "any" and "VLLM_MEDIA_URL_ALLOW_REDIRECTS" not in env
    _, env = server_command(["m", "--media-urls", "public"], on_cuda=False)
    assert env["VIDEOANCHOR_MEDIA_URLS"] == "public" and env["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] == "0"
    monkeypatch.setenv("VIDEOANCHOR_MEDIA_URLS", "public")  # compose and Helm set the variable
    monkeypatch.setenv("VLLM_MEDIA_URL_ALLOW_REDIRECTS", "1")  # the operator's own choice stands
    _, env = server_command(["m"], on_cuda=False)
    assert env["VIDEOANCHOR_MEDIA_URLS"] == "public" and "VLLM_MEDIA_URL_ALLOW_REDIRECTS" not in env


def test_a_request_that_sets_no_max_iter_gets_the_servers_limit():
    """Found by schemathesis: on a server with --anchor-max-iter-limit below the default
    (10000), `anchor: true` was refused (max_iter=10000 exceeds the limit) though the request
    asked for nothing."""
    settings = AnchorSettings(max_iter_limit=500)
    assert parse_anchor(True, settings).max_iter == 500
    assert parse_anchor({"alpha_k": 3.0}, settings).max_iter == 500
    assert parse_anchor({"max_iter": 400}, settings).max_iter == 400
    with pytest.raises(RequestError, match="exceeds this server's limit of 500"):
        parse_anchor({"max_iter": 501}, settings)
    assert parse_anchor(True, AnchorSettings()).max_iter == 10000  # under the limit: the default
    schema, _ = anchor_field(settings)
    assert schema["anyOf"][1] == {"$ref": "#/components/schemas/AnchorParams"}
    params = anchor_field(settings)[1]["AnchorParams"]["properties"]["max_iter"]
    assert params["maximum"] == 500 and params["default"] == 500
