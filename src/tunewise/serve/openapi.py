"""The published OpenAPI schema (/openapi.json, browsable at /docs) and the route annotations that feed it.

The JSON endpoints read their bodies themselves (bodies.py), so FastAPI cannot see their request models; a
route names its model with `json_body(Model)` and the schema builder adds the model (strict, as the route
validates it) to the components. `answers(Model, ...)` documents the success shape (responses.py) and the
error statuses the route can give, each with OpenAI's error envelope; `query(...)` documents query parameters
the route parses itself. The builder then adds what every route shares: the bearer key (every path but
/health and /ready, and /metrics or the docs when made public), 500 and 503, and this server's own limits
(max_tokens). Knows nothing about what the routes do.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from tunewise.serve.config import ServeConfig
from tunewise.serve.responses import ErrorEnvelope

_REQUEST_MODELS: dict[str, type[BaseModel]] = {}
_ENVELOPE_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}
_WHY = {400: "The request is invalid; `param` names the field.", 401: "Missing or wrong API key.",
        404: "No such model, file or job.", 409: "The job cannot do that in its current state.",
        413: "The body or upload is over the limit.", 429: "The server is at capacity; retry after Retry-After.",
        500: "A bug in the server; the message carries the request id of the log entry.",
        503: "The server is shutting down; retry on another replica.", 504: "No answer within --timeout."}
OPEN_PATHS = ("/health", "/ready")
DOCS_PATHS = ("/openapi.json", "/docs", "/docs/oauth2-redirect")


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads `model` from a JSON body itself."""
    _REQUEST_MODELS[model.__name__] = model
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def query(*parameters: tuple[str, dict[str, Any], str]) -> dict[str, Any]:
    """`openapi_extra` documenting query parameters (name, JSON schema, description) a route parses itself."""
    return {"parameters": [{"name": name, "in": "query", "required": False, "schema": schema,
                            "description": description} for name, schema, description in parameters]}


def answers(model: type[BaseModel] | None, *errors: int, media: dict[str, Any] | None = None) -> dict[Any, Any]:
    """`responses` for a route: 200 with `model` (or the `media` content map) and each error status given."""
    ok: dict[str, Any] = {"description": "Success"}
    if model is not None:
        ok["model"] = model
    if media is not None:
        ok["content"] = media
    return {200: ok, **{status: {"model": ErrorEnvelope, "description": _WHY[status]} for status in errors}}


def _add_request_models(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, model in sorted(_REQUEST_MODELS.items()):
        found = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="validation")
        for def_name, definition in {**found.pop("$defs", {}), name: found}.items():
            if components.get(def_name, definition) != definition:
                raise ValueError(f"two schemas named {def_name} in the OpenAPI components; rename one")
            components[def_name] = definition


def _shared_answers(schema: dict[str, Any], open_paths: set[str]) -> None:
    """Bearer auth, 500 and 503 on every operation; FastAPI's 422 entries dropped (we answer 400)."""
    schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer",
                                                          "description": "An API key, when the server has any."}}
    envelope = {"content": {"application/json": {"schema": _ENVELOPE_REF}}}
    for path, item in schema["paths"].items():
        for operation in item.values():
            responses = operation["responses"]
            responses.pop("422", None)
            statuses = [500] if path in OPEN_PATHS else [500, 503]
            if path not in open_paths:
                statuses.append(401)
            for status in statuses:
                responses.setdefault(str(status), {"description": _WHY[status], **copy.deepcopy(envelope)})
            operation["security"] = [] if path in open_paths else [{"bearer": []}]
    for unused in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(unused, None)


def _server_limits(schema: dict[str, Any], config: ServeConfig) -> None:
    components = schema["components"]["schemas"]
    for name in ("ChatRequest", "CompletionRequest"):
        if name in components:
            components[name]["properties"]["max_tokens"]["anyOf"][0]["maximum"] = config.max_tokens_limit


def builder(app: FastAPI, config: ServeConfig, open_paths: set[str]) -> Callable[[], dict[str, Any]]:
    """`app.openapi`: the schema, built once on first request."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            _add_request_models(schema)
            _shared_answers(schema, open_paths | set(OPEN_PATHS))
            _server_limits(schema, config)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi
