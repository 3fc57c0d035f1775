"""ASGI middleware in front of vLLM's OpenAI routes (loaded with vLLM's `--middleware`).

For POST /v1/chat/completions and /v1/completions it rewrites the JSON body with
`rewrite_request` (bad input: HTTP 400, OpenAI error format), counts the request, and adds
response headers saying whether anchoring was applied and what the solve cost:
  x-videoanchor-anchor: applied | off
  x-videoanchor-solver-seconds, x-videoanchor-solver-iterations, x-videoanchor-solver-converged
(the solve that produced the gains: an identical earlier request's when served from cache).
vLLM adds user middleware outside its own API-key check, so requests that do not carry a
valid key are passed on untouched, to be refused there.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid

from prometheus_client import Counter

from vllm_videoanchor.engine import solve_log

from .config import ServerSettings
from .request import RequestError, rewrite_request

ROUTES = ("/v1/chat/completions", "/v1/completions")

REQUESTS = Counter("videoanchor_requests", "Generation requests seen by the anchor layer", ["anchor"])
REJECTED = Counter("videoanchor_rejected_requests", "Requests refused by the anchor layer (HTTP 400)")


def _api_keys() -> list[str]:
    keys = [k for k in os.environ.get("VIDEOANCHOR_API_KEYS", "").split("\n") if k]
    return keys or [k for k in [os.environ.get("VLLM_API_KEY")] if k]


def _authorized(scope, keys: list[str]) -> bool:
    if not keys:
        return True
    header = dict(scope.get("headers") or ()).get(b"authorization", b"").decode("latin-1")
    return any(secrets.compare_digest(header, f"Bearer {key}") for key in keys)


def error_body(message: str, param: str | None) -> bytes:
    return json.dumps({"error": {"message": message, "type": "BadRequestError", "param": param,
                                 "code": 400}}).encode()


class AnchorMiddleware:
    def __init__(self, app):
        self.app = app
        self.settings = ServerSettings.from_env()
        self.api_keys = _api_keys()

    async def __call__(self, scope, receive, send):
        if (scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in ROUTES
                or not _authorized(scope, self.api_keys)):
            return await self.app(scope, receive, send)
        body = await _read_body(receive)
        tag = uuid.uuid4().hex
        try:
            request = json.loads(body)
        except ValueError:
            return await self.app(scope, _replay(body, receive), send)  # vLLM answers bad JSON itself
        try:
            rewritten, decision = rewrite_request(request, self.settings, tag)
        except RequestError as exc:
            REJECTED.inc()
            return await _send_error(send, str(exc), exc.param)
        REQUESTS.labels(anchor="applied" if decision.applied else "off").inc()
        if rewritten != request:  # otherwise vLLM gets the client's bytes as they came
            body = json.dumps(rewritten).encode()
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
            scope = dict(scope, headers=headers + [(b"content-length", str(len(body)).encode())])

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = dict(message, headers=list(message.get("headers", [])) + _anchor_headers(decision, tag))
            await send(message)

        await self.app(scope, _replay(body, receive), send_with_headers)


def _anchor_headers(decision, tag: str) -> list[tuple[bytes, bytes]]:
    digests = solve_log.take_request(tag)
    headers = [(b"x-videoanchor-anchor", b"applied" if decision.applied else b"off")]
    solves = solve_log.read(digests) if decision.applied else []
    if solves:
        headers += [
            (b"x-videoanchor-solver-seconds", f"{sum(s for s, _, _ in solves):.6f}".encode()),
            (b"x-videoanchor-solver-iterations", str(sum(i for _, i, _ in solves)).encode()),
            (b"x-videoanchor-solver-converged", b"true" if all(c for _, _, c in solves) else b"false"),
        ]
    return headers


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """The body once, then the client's own channel (so disconnects still reach vLLM)."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _send_error(send, message: str, param: str | None) -> None:
    body = error_body(message, param)
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
