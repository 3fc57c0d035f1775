"""`vllm-videoanchor router --encoder URL [URL ...] --decode URL`: the front of the
disaggregated mode (vLLM's encoder disaggregation, E/PD).

It follows vLLM's own E/PD proxy flow: a chat request with images or videos goes first to
an encoder instance (round robin), which runs the vision tower and the SSC solve and hands
the encoder outputs, gain columns included, to the prefill/decode instance through vLLM's EC
connector; once the encoder instance has answered, the request goes to the prefill/decode
instance, whose response (streamed or not, with its x-videoanchor-* headers) goes back to the
client. So the solve never runs inside the decode instance's steps. Text-only requests and
every other route go straight to the prefill/decode instance. Client errors found by the
encoder instance (an invalid `anchor`) come back as they are; an encoder instance that
cannot be reached is a 503 naming it, never a hang.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .request import error_body, has_visual_input

ENCODED_ROUTES = ("/v1/chat/completions",)
# headers that belong to one hop, not to the request or response
HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


def error(status: int, message: str) -> Response:
    return Response(error_body(message, status), status_code=status, media_type="application/json")


def encoder_request(body: dict) -> dict:
    """What the encoder instance gets: the same items and options, nothing to generate
    (an EC producer stops once the prompt's encoder inputs are encoded)."""
    request = {k: v for k, v in body.items() if k not in ("stream", "stream_options", "n", "logprobs",
                                                           "top_logprobs", "prompt_logprobs")}
    request["max_tokens"] = 1
    if "max_completion_tokens" in request:
        request["max_completion_tokens"] = 1
    return request


class Router:
    def __init__(self, encoders: list[str], decode: str, timeout: float = 600.0):
        if not encoders:
            raise ValueError("the router needs at least one --encoder URL")
        self.encoders = itertools.cycle([url.rstrip("/") for url in encoders])
        self.decode = decode.rstrip("/")
        self.client = httpx.AsyncClient(timeout=timeout)

    def app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(app):
            yield
            await self.client.aclose()

        return Starlette(routes=[Route("/{path:path}", self.forward, methods=["GET", "POST", "DELETE"])],
                         lifespan=lifespan)

    async def forward(self, request: Request) -> Response:
        path = "/" + request.path_params["path"]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        body = await request.body()
        if request.method == "POST" and path in ENCODED_ROUTES:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None  # the decode instance answers bad JSON itself
            if isinstance(parsed, dict) and has_visual_input(parsed):
                refused = await self._encode(path, parsed, headers)
                if refused is not None:
                    return refused
        return await self._relay(request.method, path, body, headers, request.url.query)

    async def _encode(self, path: str, body: dict, headers: dict) -> Response | None:
        """Runs the request's encoder inputs on an encoder instance; a Response to return
        instead of going on (the encoder's client error, or a 503), else None."""
        url = next(self.encoders)
        try:
            response = await self.client.post(url + path, json=encoder_request(body), headers=headers)
        except httpx.HTTPError as exc:
            return error(503, f"encoder instance {url} is unavailable ({type(exc).__name__}: {exc}); "
                              "the request was not served")
        if response.status_code >= 500:
            return error(503, f"encoder instance {url} failed (HTTP {response.status_code}: "
                              f"{response.text[:300]}); the request was not served")
        if response.status_code >= 400:  # the client's error (e.g. an invalid anchor): theirs to see
            return Response(response.content, status_code=response.status_code,
                            media_type=response.headers.get("content-type"))
        return None

    async def _relay(self, method: str, path: str, body: bytes, headers: dict, query: str) -> Response:
        url = self.decode + path + (f"?{query}" if query else "")
        try:
            upstream = await self.client.send(self.client.build_request(method, url, content=body, headers=headers),
                                              stream=True)
        except httpx.HTTPError as exc:
            return error(503, f"prefill/decode instance {self.decode} is unavailable ({type(exc).__name__}: {exc})")
        reply_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}

        async def chunks():
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                await upstream.aclose()

        return StreamingResponse(chunks(), status_code=upstream.status_code, headers=reply_headers)


def main(argv: list[str]) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="vllm-videoanchor router", description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", nargs="+", required=True, help="encoder instances (vllm-videoanchor serve "
                        "--anchor-role encoder)")
    parser.add_argument("--decode", required=True, help="the prefill/decode instance (--anchor-role decode)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    uvicorn.run(Router(args.encoder, args.decode).app(), host=args.host, port=args.port, log_level="warning")
