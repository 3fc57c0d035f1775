"""ASGI middleware in front of vLLM's OpenAI routes (loaded with vLLM's `--middleware`).

For POST /v1/chat/completions, /v1/completions and /invocations (ROUTES) it rewrites the
JSON body with `rewrite_request` (bad input: HTTP 400, OpenAI error format), counts the
request, and adds response headers saying what happened to anchoring, as the engines
reported it. Every other POST route, whichever vLLM release added it, refuses a body that
carries `anchor`, `mm_processor_kwargs` or `media_io_kwargs` (GUARDED_KEYS: the server trusts
request mm kwargs only because this layer checks them), so no route bypasses the rules and
none drops `anchor` silently. Headers:
  x-videoanchor-anchor: applied | failed | unconfirmed | off
    applied: every anchored item was solved and its gains used; failed: some item was
    served plain (x-videoanchor-failure says why; the engine's log too), or the request
    itself failed; unconfirmed: no engine report arrived in time (never claimed as applied)
  x-videoanchor-solver-seconds, x-videoanchor-solver-iterations, x-videoanchor-solver-converged,
  x-videoanchor-solver-stopped-by (what ended each solve: distance or residual, its stopping
  tests; max_iter; budget, the server's solve budget, which served the iterate reached; none,
  a method without an ADMM), x-videoanchor-solver-distance (the largest estimated relative
  distance ||C - C*|| / ||C|| of the ADMM where it stopped; absent when a solve did not
  report one)
(the solve that produced the gains: an identical earlier request's when served from cache),
  x-videoanchor-explain: /v1/videoanchor/explain/<id>[, ...]  (one per anchored item or group)
GET /v1/videoanchor/explain/<id> answers that solve's per-token scores and cluster labels
as JSON (the newest maps are kept: solve_log.KEEP_ANCHOR_MAPS), behind the same API key as
every /v1 route. Pictures are drawn by `vllm-videoanchor explain` from the video itself:
the server keeps no frames.
The response's start is held until its first body chunk (for a stream: after the prefill,
so after the solve), so that the headers report what happened.
vLLM adds user middleware outside its own API-key check, so requests that do not carry a
valid key are passed on untouched, to be refused there.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import uuid

from prometheus_client import Counter

from vllm_videoanchor.engine.solve_log import REQUEST_ITEMS, SolveLog
from vllm_videoanchor.settings import process_settings

from . import openapi
from .media import check_media_urls, media_urls, policy_from_env
from .openapi import EXPLAIN_ROUTE
from .request import RequestError, error_body, rewrite_request

# the routes whose bodies are rewritten and checked (rewrite_request); /invocations takes a
# chat or completion body and hands it to the same vLLM handlers
ROUTES = ("/v1/chat/completions", "/v1/completions", "/invocations")
# what only a checked route may carry: the launcher trusts request mm kwargs for the whole
# server (--trust-request-mm-kwargs), so every other POST route refuses a body with these at
# its top level (or in the objects of a top-level list), whatever vLLM version adds the route
GUARDED_KEYS = ("anchor", "mm_processor_kwargs", "media_io_kwargs")
ANTHROPIC_ROUTES = ("/v1/messages",)  # their errors in Anthropic's format

REQUESTS = Counter("videoanchor_requests", "Generation requests answered, by what happened to anchoring",
                   ["anchor"])
REJECTED = Counter("videoanchor_rejected_requests", "Requests refused by the anchor layer (HTTP 400)")


def _api_keys(settings) -> list[str]:
    """serve's --api-key (in the settings), else vLLM's own variable: the keys vLLM checks."""
    return list(settings.api_keys) or [k for k in [os.environ.get("VLLM_API_KEY")] if k]


def _authorized(scope, keys: list[str]) -> bool:
    if not keys:
        return True
    header = dict(scope.get("headers") or ()).get(b"authorization", b"").decode("latin-1")
    return any(secrets.compare_digest(header, f"Bearer {key}") for key in keys)


class AnchorMiddleware:
    def __init__(self, app):
        self.app = app
        self.settings = process_settings()
        self.solve_log = SolveLog(self.settings.solve_log)
        self.api_keys = _api_keys(self.settings)
        self.media_policy = policy_from_env()

    async def __call__(self, scope, receive, send):
        if "app" in scope:  # the FastAPI app (Starlette puts it in every scope, lifespan's first)
            openapi.install(scope["app"], self.settings)
        if (scope["type"] == "http" and scope.get("method") == "GET" and scope.get("path", "").startswith(EXPLAIN_ROUTE)
                and _authorized(scope, self.api_keys)):  # unauthorized: vLLM's check answers 401
            return await self._explain(scope["path"][len(EXPLAIN_ROUTE):], send)
        if scope["type"] != "http" or scope.get("method") != "POST" or not _authorized(scope, self.api_keys):
            return await self.app(scope, receive, send)
        if scope.get("path") not in ROUTES:
            return await self._guard(scope, receive, send)
        body = await _read_body(receive)
        tag = uuid.uuid4().hex
        try:
            request = json.loads(body)
        except UnicodeDecodeError:  # FastAPI would answer {"detail": ...}, not OpenAI's error format
            REJECTED.inc()
            return await _send_error(send, "the request body is not JSON text (UTF-8, -16 or -32)", None)
        except ValueError:
            return await self.app(scope, _replay(body, receive), send)  # vLLM answers bad JSON itself
        try:
            await self._check_media(scope, request)
            rewritten, decision = rewrite_request(request, self.settings, tag)
        except RequestError as exc:
            REJECTED.inc()
            return await _send_error(send, str(exc), exc.param)
        if decision.applied:  # an engine that cannot anchor said why at start-up
            unavailable = await asyncio.to_thread(self.solve_log.engine_unavailable)
            if unavailable:
                REJECTED.inc()
                return await _send_error(send, f"anchor: {unavailable}", "anchor")
        if rewritten != request:  # otherwise vLLM gets the client's bytes as they came
            body = json.dumps(rewritten).encode()
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
            scope = dict(scope, headers=headers + [(b"content-length", str(len(body)).encode())])

        start = None

        async def send_with_headers(message):
            nonlocal start
            if message["type"] == "http.response.start":
                start = message  # held until the first body chunk: the solve has run by then
                return
            if start is not None:
                headers = await self._anchor_headers(decision, tag, start.get("status", 200))
                await send(dict(start, headers=list(start.get("headers", [])) + headers))
                start = None
            await send(message)

        try:
            if isinstance(rewritten, dict) and not rewritten.get("stream"):
                retry = _RetryOnce(send_with_headers)
                await self.app(scope, _replay(body, receive), retry)
                if retry.wanted:  # vLLM dropped the stale cache entries: the same request again
                    await self.app(scope, _replay(body, receive), send_with_headers)
            else:
                await self.app(scope, _replay(body, receive), send_with_headers)
        finally:
            REQUEST_ITEMS.take_request(tag)  # never left behind (errors, disconnects)

    async def _guard(self, scope, receive, send) -> None:
        """Any other POST route: a JSON body carrying a GUARDED_KEYS key is refused (400, in
        the route's error format); everything else reaches vLLM as it came."""
        body = await _read_body(receive)
        try:
            request = json.loads(body) if body.lstrip()[:1] in (b"{", b"[") else None
        except ValueError:
            request = None
        found = guarded_keys(request)
        path = scope.get("path", "")
        if found:
            message = (f"{path} does not accept {', '.join(repr(k) for k in found)}: anchoring and media options "
                       f"are served on {', '.join(ROUTES)}")
            param = found[0]
        else:
            try:
                await self._check_media(scope, request)
            except RequestError as exc:
                message, param = str(exc), exc.param
            else:
                return await self.app(scope, _replay(body, receive), send)
        REJECTED.inc()
        if path in ANTHROPIC_ROUTES:
            error = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
            return await _send_body(send, 400, json.dumps(error).encode())
        return await _send_error(send, message, param)

    async def _check_media(self, scope, request) -> None:
        """RequestError for a media URL this server must not fetch (server/media.py): file://
        without vLLM's --allowed-local-media-path; with the `public` policy, hosts that are
        not globally routable. Host names are resolved off the event loop."""
        urls = [url for _, url in media_urls(request)]
        if not urls:
            return
        args = getattr(getattr(scope.get("app"), "state", None), "args", None)
        # vLLM's own setting; where it cannot be read, file:// URLs are left to vLLM
        local_media = bool(getattr(args, "allowed_local_media_path", None)) if args is not None else True
        if self.media_policy == "public" and any(url[:8].lower().startswith(("http:", "https:")) for url in urls):
            await asyncio.to_thread(check_media_urls, request, self.media_policy, local_media)  # resolves names
        else:
            check_media_urls(request, self.media_policy, local_media)  # no name to resolve: string checks only

    async def _anchor_headers(self, decision, tag: str, status: int) -> list[tuple[bytes, bytes]]:
        """What happened to anchoring, from the engines' reports on the request's items."""
        if not decision.applied:
            REQUESTS.labels(anchor="off").inc()
            return [(b"x-videoanchor-anchor", b"off")]
        digests = REQUEST_ITEMS.take_request(tag)
        outcomes = await self._outcomes(digests) if status < 400 else {}
        failures = [o.error for o in outcomes.values() if not o.applied]
        if status >= 400 or failures:  # an item served plain, or the request not served at all
            state = "failed"
        elif digests and len(outcomes) == len(digests):
            state = "applied"
        else:
            state = "unconfirmed"
        REQUESTS.labels(anchor=state).inc()
        headers = [(b"x-videoanchor-anchor", state.encode())]
        if failures:
            reason = failures[0].encode("ascii", "replace")[:200].replace(b"\r", b" ").replace(b"\n", b" ")
            headers.append((b"x-videoanchor-failure", reason))
        if state == "applied":  # every outcome is an applied solve
            solves = outcomes.values()
            links = ", ".join(f"{EXPLAIN_ROUTE}{digest:012x}" for digest in digests)
            headers += [
                (b"x-videoanchor-explain", links.encode()),
                (b"x-videoanchor-solver-seconds", f"{sum(o.seconds for o in solves):.6f}".encode()),
                (b"x-videoanchor-solver-iterations", str(sum(o.iterations for o in solves)).encode()),
                (b"x-videoanchor-solver-converged", b"true" if all(o.converged for o in solves) else b"false"),
            ]
            stops = list(dict.fromkeys(o.stopped_by for o in solves if o.stopped_by))
            if stops:
                headers.append((b"x-videoanchor-solver-stopped-by", ", ".join(stops).encode()))
            if all(o.distance is not None for o in solves):
                headers.append((b"x-videoanchor-solver-distance", f"{max(o.distance for o in solves):.3g}".encode()))
        return headers

    async def _explain(self, item_id: str, send) -> None:
        """One solve's anchor map: {"id", "n_tokens", "score", "label"}; 404 if unknown or expired."""
        try:
            digest = int(item_id, 16) if 0 < len(item_id) <= 12 else None
        except ValueError:
            digest = None
        found = await asyncio.to_thread(self.solve_log.read_anchors, digest) if digest else None
        if found is None:
            message = f"no anchor map for {item_id!r} (unknown, failed, or no longer kept)"
            return await _send_body(send, 404, error_body(message, 404))
        await _send_body(send, 200, json.dumps({"id": item_id, "n_tokens": len(found.score), "score": found.score,
                                                "label": found.labels}).encode())

    async def _outcomes(self, digests: list[int], wait: float = 2.0) -> dict:
        """The engines' reports for these digests; they are written off the model step, so
        give them a moment to land (the request's prefill is done by now)."""
        outcomes = {}
        for _ in range(int(wait / 0.05)):
            outcomes = await asyncio.to_thread(self.solve_log.read, digests)
            if len(outcomes) == len(digests):
                break
            await asyncio.sleep(0.05)
        return outcomes


# vLLM's answer to a request that ended with finish_reason "error", which it defines as a
# retryable request-level failure: in vLLM 0.32 a multimodal cache drift between the API
# server and the engine (an item whose request failed validation after its processing, sent
# again; MultiModalCacheMissError), which vLLM answers 500 and heals by dropping the stale
# entries for the retry
RETRYABLE_ERROR = {"message": "Internal server error", "type": "InternalServerError", "param": None, "code": 500}


class _RetryOnce:
    """A send() for a non-streamed response: passes it on, unless it is RETRYABLE_ERROR, which
    it swallows once (`wanted`: the caller runs the request again)."""

    def __init__(self, send):
        self.send, self.wanted, self._start = send, False, None

    async def __call__(self, message):
        if message["type"] == "http.response.start" and message.get("status") == 500:
            self._start = message  # held: it may be the retryable error
            return
        if self._start is not None and message["type"] == "http.response.body":
            start, self._start = self._start, None
            body = message.get("body", b"")
            if not message.get("more_body") and _is_retryable(body):
                self.wanted = True
                return
            await self.send(start)
        await self.send(message)


def _is_retryable(body: bytes) -> bool:
    try:
        return json.loads(body).get("error") == RETRYABLE_ERROR
    except (ValueError, AttributeError):
        return False


def guarded_keys(request) -> list[str]:
    """The GUARDED_KEYS a parsed JSON body carries: at its top level, or in the objects of
    its top-level lists (a batch of requests, the body itself a list)."""
    objects = [obj for obj in (request if isinstance(request, list) else [request]) if isinstance(obj, dict)]
    for obj in list(objects):
        for value in obj.values():
            if isinstance(value, list):
                objects += [item for item in value if isinstance(item, dict)]
    return [key for key in GUARDED_KEYS if any(key in obj for obj in objects)]


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
    await _send_body(send, 400, error_body(message, 400, param))


async def _send_body(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
