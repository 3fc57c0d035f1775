"""The server's OpenAPI schema (/openapi.json, /docs) with what our layer adds to vLLM's.

vLLM's request models do not know `anchor` (the middleware takes it out before they parse
the body), so FastAPI's generated schema would not show it. `extend_schema` adds it, from the
one pydantic model the server validates it with (`AnchorParams.model_json_schema()`, its
knobs' types, bounds, defaults and descriptions as declared there), to every checked route's
request body, with this server's own limits on top (`anchor.max_iter` up to
--anchor-max-iter-limit); narrows `media_io_kwargs` to what the server accepts; and adds the
explain route (GET /v1/videoanchor/explain/{id}). `install` makes the FastAPI app serve it.
No vLLM import here.
"""

from __future__ import annotations

import copy

from vllm_videoanchor.anchor import AnchorParams
from vllm_videoanchor.settings import AnchorSettings

# the anchor-map route the middleware serves (declared here, with the rest of the API clients see)
EXPLAIN_ROUTE = "/v1/videoanchor/explain/"

REF = "#/components/schemas/{model}"
# the request body schemas of the checked routes (vLLM 0.32's names; /invocations takes either)
REQUEST_SCHEMAS = ("ChatCompletionRequest", "CompletionRequest")
ERROR_SCHEMA = {
    "title": "ErrorResponse",
    "type": "object",
    "description": "OpenAI's error format",
    "properties": {"error": {"type": "object", "required": ["message", "type", "code"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"anyOf": [{"type": "string"}, {"type": "null"}]}, "code": {"type": "integer"}}}},
    "required": ["error"],
}
ANCHOR_MAP_SCHEMA = {
    "title": "AnchorMap",
    "type": "object",
    "description": "One solve's per-token scores in [0, 1] and cluster labels, in the item's token order",
    "properties": {"id": {"type": "string"}, "n_tokens": {"type": "integer", "minimum": 0},
                   "score": {"type": "array", "items": {"type": "number"}},
                   "label": {"type": "array", "items": {"type": "integer"}}},
    "required": ["id", "n_tokens", "score", "label"],
}


def anchor_field(settings: AnchorSettings) -> tuple[dict, dict]:
    """(the `anchor` property's schema, the component schemas it refers to)."""
    params = AnchorParams.model_json_schema(ref_template=REF)
    components = params.pop("$defs", {})
    limit = settings.max_iter_limit
    max_iter = params.get("properties", {}).get("max_iter")
    if max_iter is not None and limit is not None:
        max_iter["maximum"] = min(max_iter.get("maximum", limit), limit)
        if max_iter.get("default", 0) > limit:  # what a request that sets no max_iter gets here
            max_iter["default"] = limit
        max_iter["description"] = f"{max_iter.get('description', '')} (this server: at most {limit})".strip()
    components["AnchorParams"] = params
    default = "on" if settings.anchor_default else "off"
    field = {
        "title": "Anchor",
        "description": ("VideoAnchor for this request's videos and images: absent or null = the server's default "
                        f"(here: {default}); false = off; true = the served model's defaults; an object = "
                        "AnchorParams fields on top of them. Also accepted as mm_processor_kwargs.anchor."),
        "anyOf": [{"type": "boolean"}, {"$ref": REF.format(model="AnchorParams")}, {"type": "null"}],
        "default": None,
    }
    return field, components


def media_io_kwargs_field(settings: AnchorSettings) -> dict:
    return {
        "title": "Media Io Kwargs",
        "description": "Only a video frame count is accepted by this server",
        "anyOf": [{"type": "object", "additionalProperties": False, "properties": {"video": {
            "type": "object", "additionalProperties": False, "properties": {
                "num_frames": {"type": "integer", "minimum": 1, "maximum": settings.max_frames}}}}},
            {"type": "null"}],
        "default": None,
    }


def explain_path() -> dict:
    ref = {"$ref": REF.format(model="VideoAnchorError")}
    return {"get": {
        "summary": "Anchor map",
        "description": ("One anchored item's solve, as linked from a response's x-videoanchor-explain header: "
                        "per-token scores and cluster labels (the newest maps are kept)."),
        "operationId": "videoanchor_explain",
        "tags": ["videoanchor"],
        "parameters": [{"name": "item_id", "in": "path", "required": True, "description": "the item's id (hex)",
                        "schema": {"type": "string", "pattern": "^[0-9a-f]{1,12}$"}}],
        "responses": {
            "200": {"description": "the anchor map",
                    "content": {"application/json": {"schema": {"$ref": REF.format(model="AnchorMap")}}}},
            "404": {"description": "unknown, failed, or no longer kept",
                    "content": {"application/json": {"schema": ref}}},
        },
    }}


def extend_schema(schema: dict, settings: AnchorSettings) -> dict:
    """vLLM's schema with our layer's additions (a new dict; vLLM's is not changed)."""
    schema = copy.deepcopy(schema)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    field, referenced = anchor_field(settings)
    components.update(referenced)
    components["AnchorMap"] = ANCHOR_MAP_SCHEMA
    components["VideoAnchorError"] = ERROR_SCHEMA
    for name in REQUEST_SCHEMAS:
        body = components.get(name)
        if body is not None:
            body.setdefault("properties", {})["anchor"] = field
            if "media_io_kwargs" in body["properties"]:
                body["properties"]["media_io_kwargs"] = media_io_kwargs_field(settings)
    schema.setdefault("paths", {})[EXPLAIN_ROUTE + "{item_id}"] = explain_path()
    return schema


def install(app, settings: AnchorSettings) -> None:
    """Make a FastAPI app serve the extended schema (/openapi.json and what /docs reads)."""
    if getattr(app, "_videoanchor_openapi", False) or not callable(getattr(app, "openapi", None)):
        return
    generate = app.openapi

    def openapi() -> dict:
        if getattr(app, "_videoanchor_schema", None) is None:
            app._videoanchor_schema = extend_schema(generate(), settings)
        return app._videoanchor_schema

    app.openapi = openapi
    app._videoanchor_openapi = True
