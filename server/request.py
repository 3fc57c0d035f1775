"""The `anchor` request option, mapped onto the plugin's per-request path.

vLLM drops unknown top-level fields, and the plugin reads `mm_processor_kwargs`, which the
server must trust (`--trust-request-mm-kwargs`) for the plugin to see it. So every JSON
body for a generation route passes through `rewrite_request` first: it takes `anchor` out,
validates it (pydantic; errors name the field), applies the server's defaults and limits,
reduces whatever the client put in `mm_processor_kwargs` / `media_io_kwargs` to the
allowlist, and writes back only what the plugin needs. No vLLM import here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from vllm_videoanchor.anchor import AnchorParams
from vllm_videoanchor.engine.option import ANCHOR_KEY, REQUEST_TAG_KEY, parse_anchor_option
from vllm_videoanchor.settings import AnchorSettings

_MISSING = object()
VISUAL_PART_TYPES = ("image_url", "video_url", "input_image", "image", "video", "image_pil", "image_embeds")


# the OpenAI error "type" per HTTP status our layer answers with
ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError", 503: "ServiceUnavailable"}


def error_body(message: str, status: int = 400, param: str | None = None) -> bytes:
    """An error response's JSON body in the OpenAI error format."""
    return json.dumps({"error": {"message": message, "type": ERROR_TYPES.get(status, "Error"), "param": param,
                                 "code": status}}).encode()


class RequestError(ValueError):
    """A client error: answered with HTTP 400 in the OpenAI error format."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class AnchorDecision:
    params: AnchorParams | None  # None: anchoring off
    has_visual_input: bool

    @property
    def applied(self) -> bool:
        return self.params is not None and self.has_visual_input


def _pydantic_message(exc: ValidationError) -> tuple[str, str]:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    param = f"{ANCHOR_KEY}.{field}" if field else ANCHOR_KEY
    return f"{param}: {error['msg']}", param


def parse_anchor(value: Any, settings: AnchorSettings) -> AnchorParams | None:
    """`anchor` as sent (absent, bool, object) -> parameters, or RequestError naming the field."""
    if value is _MISSING or value is None:
        value = settings.anchor_default
    try:
        params = parse_anchor_option(value)  # the plugin's own parsing: one set of rules
    except ValidationError as exc:
        raise RequestError(*_pydantic_message(exc)) from None
    except ValueError as exc:  # not true, false or an object
        raise RequestError(str(exc), ANCHOR_KEY) from None
    if params is None:
        return None
    if "max_iter" not in params.model_fields_set and params.max_iter > settings.max_iter_limit:
        # the limit bounds what a request may ask for; one that asks nothing gets the limit
        return params.model_copy(update={"max_iter": settings.max_iter_limit})
    if params.max_iter > settings.max_iter_limit:
        raise RequestError(f"{ANCHOR_KEY}.max_iter={params.max_iter} exceeds this server's limit of "
                           f"{settings.max_iter_limit}", f"{ANCHOR_KEY}.max_iter")
    return params


def _check_media_io_kwargs(value: Any, settings: AnchorSettings) -> None:
    """Only a frame count for videos, within the server's bound."""
    if value is None:
        return
    if not isinstance(value, dict) or set(value) - {"video"} or not isinstance(value.get("video", {}), dict):
        raise RequestError("media_io_kwargs: only {\"video\": {\"num_frames\": N}} is accepted by this server",
                           "media_io_kwargs")
    video = value.get("video", {})
    if set(video) - {"num_frames"}:
        raise RequestError(f"media_io_kwargs.video: only num_frames is accepted by this server, got "
                           f"{sorted(set(video) - {'num_frames'})}", "media_io_kwargs.video")
    frames = video.get("num_frames")
    if frames is not None and (type(frames) is not int or not 1 <= frames <= settings.max_frames):
        raise RequestError(f"media_io_kwargs.video.num_frames must be an integer in [1, {settings.max_frames}] "
                           f"(this server's limit), got {frames!r}", "media_io_kwargs.video.num_frames")


def _client_anchor(mm_kwargs: Any) -> Any:
    """`anchor` given inside mm_processor_kwargs (the plugin's spelling); nothing else allowed."""
    if mm_kwargs is None:
        return _MISSING
    if not isinstance(mm_kwargs, dict):
        raise RequestError("mm_processor_kwargs must be an object", "mm_processor_kwargs")
    extra = sorted(set(mm_kwargs) - {ANCHOR_KEY})
    if extra:
        raise RequestError(f"mm_processor_kwargs: only '{ANCHOR_KEY}' is accepted by this server, got {extra}",
                           "mm_processor_kwargs")
    return mm_kwargs.get(ANCHOR_KEY, _MISSING)


def has_visual_input(body: dict) -> bool:
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in VISUAL_PART_TYPES:
                    return True
    return bool(body.get("multi_modal_data"))


def rewrite_request(body: Any, settings: AnchorSettings, tag: str) -> tuple[Any, AnchorDecision]:
    """The body vLLM should see, and what was decided. RequestError for bad input."""
    if not isinstance(body, dict):
        return body, AnchorDecision(None, False)
    body = dict(body)
    top = body.pop(ANCHOR_KEY, _MISSING)
    inner = _client_anchor(body.pop("mm_processor_kwargs", None))
    if top is not _MISSING and inner is not _MISSING and top != inner:
        raise RequestError(f"{ANCHOR_KEY} is given both at the top level and in mm_processor_kwargs, "
                           "with different values", ANCHOR_KEY)
    _check_media_io_kwargs(body.get("media_io_kwargs"), settings)
    params = parse_anchor(top if top is not _MISSING else inner, settings)
    decision = AnchorDecision(params, has_visual_input(body))
    if decision.applied:
        # only what the client set: the engine fills in the model's defaults (MODEL_DEFAULTS)
        # and encodes the resolved parameters, so `true` and the same values spelled out
        # still share caches
        body["mm_processor_kwargs"] = {ANCHOR_KEY: params.model_dump(mode="json", exclude_unset=True) or True,
                                       REQUEST_TAG_KEY: tag}
    return body, decision
