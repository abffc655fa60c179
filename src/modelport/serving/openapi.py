"""The OpenAPI 3 description of ``modelport serve``'s HTTP routes: the Open Inference Protocol v2 as KServe
publishes it (health, server and model metadata, infer with or without a version) plus ``/metrics``, and for
generation bundles Triton's generate extension and the OpenAI-compatible routes (their error body OpenAI's).

What it is for: clients and fuzzers (tests/test_serve_fuzz.py runs schemathesis over it). It describes
every route the server answers, with the error body ``{"error": "..."}`` each may return; the server does
not depend on it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi", "DATATYPES"]

DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
             "FP64", "BYTES"]  # fmt: skip

_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
_PARAMETERS = {"type": "object", "additionalProperties": True}
_TENSOR_DATA: dict[str, Any] = {
    "description": "row-major values, flat or nested as the shape",
    "type": "array",
    "items": {"anyOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string"}, {"type": "array"}]},
}
_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": _PARAMETERS,
        "inputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype"],
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "datatype": {"type": "string", "enum": DATATYPES},
                    "parameters": _PARAMETERS,
                    "data": _TENSOR_DATA,
                },
            },
        },
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": _PARAMETERS},
            },
        },
    },
}
_INFER_RESPONSE = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": {"type": "object"}},
    },
}


_OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {"message": {"type": "string"}, "type": {"type": "string"}},
        }
    },
}
_GENERATE_REQUEST = {
    "type": "object",
    "required": ["text_input"],
    "properties": {"text_input": {"type": "string"}, "parameters": _PARAMETERS},
}
_GENERATE_RESPONSE = {
    "type": "object",
    "required": ["model_name", "text_output"],
    "properties": {"model_name": {"type": "string"}, "text_output": {"type": "string"}},
}
_COMPLETION_REQUEST = {
    "type": "object",
    "required": ["model"],
    "properties": {
        "model": {"type": "string"},
        "prompt": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer"}}]},
        "messages": {"type": "array", "items": {"type": "object"}},
        "max_tokens": {"type": "integer"},
        "temperature": {"type": "number"},
        "top_p": {"type": "number"},
        "seed": {"type": "integer"},
        "stream": {"type": "boolean"},
    },
}


def _answers(ok: dict[str, Any] | None, *errors: int, error: dict[str, Any] = _ERROR) -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": "OK"}}
    if ok is not None:
        out["200"]["content"] = {"application/json": {"schema": ok}}
    for status in errors:
        out[str(status)] = {"description": "error", "content": {"application/json": {"schema": error}}}
    return out


def _post(body: dict[str, Any], ok: dict[str, Any], *errors: int, **more: Any) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": _answers(ok, *errors, **more)}  # fmt: skip


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def openapi(models: list[str] | None = None, versions: list[str] | None = None) -> dict[str, Any]:
    """The description as a dict. ``models``/``versions``: the names a fuzzer should try (an enum of the
    served ones plus one unknown reaches both the model and the 404); default: any string."""
    model = _path("model_name")
    version = _path("model_version")
    if models:
        model["schema"] = {"type": "string", "enum": [*models, "no-such-model"]}
    if versions:
        version["schema"] = {"type": "string", "enum": [*versions, "9"]}
    metadata = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    infer = {
        "requestBody": {"required": True, "content": {"application/json": {"schema": _INFER_REQUEST}}},
        "responses": _answers(_INFER_RESPONSE, 400, 401, 404, 405, 413, 503),
    }
    paths: dict[str, Any] = {
        "/v2": {"get": {"responses": _answers(metadata, 401)}},
        "/v2/health/live": {"get": {"responses": _answers(None)}},
        "/v2/health/ready": {"get": {"responses": _answers(None, 503)}},
        "/v2/models/{model_name}": {"get": {"parameters": [model], "responses": _answers(metadata, 401, 404, 503)}},
        "/v2/models/{model_name}/versions/{model_version}": {
            "get": {"parameters": [model, version], "responses": _answers(metadata, 401, 404, 503)}
        },
        "/v2/models/{model_name}/ready": {"get": {"parameters": [model], "responses": _answers(None, 401, 404, 503)}},
        "/v2/models/{model_name}/versions/{model_version}/ready": {
            "get": {"parameters": [model, version], "responses": _answers(None, 401, 404, 503)}
        },
        "/v2/models/{model_name}/infer": {"post": {"parameters": [model], **infer}},
        "/v2/models/{model_name}/versions/{model_version}/infer": {"post": {"parameters": [model, version], **infer}},
        "/metrics": {"get": {"responses": {"200": {"description": "Prometheus text", "content": {"text/plain": {}}}}}},
    }
    generate = _post(_GENERATE_REQUEST, _GENERATE_RESPONSE, 400, 401, 404, 413, 429, 500, 503)
    for route in ("generate", "generate_stream"):  # (a stream's 200 is text/event-stream: not described here)
        paths[f"/v2/models/{{model_name}}/{route}"] = {"post": {"parameters": [model], **generate}}
    listing = {"type": "object", "required": ["object", "data"], "properties": {"data": {"type": "array"}}}
    completion = _post(_COMPLETION_REQUEST, {"type": "object"}, 400, 401, 404, 413, 429, 500, error=_OPENAI_ERROR)
    paths["/v1/models"] = {"get": {"responses": _answers(listing, 401, error=_OPENAI_ERROR)}}
    paths["/v1/completions"] = {"post": completion}
    paths["/v1/chat/completions"] = {"post": completion}
    return {
        "openapi": "3.0.3",
        "info": {"title": "modelport serve: Open Inference Protocol v2, generate, OpenAI-compatible", "version": "2"},
        "paths": paths,
    }
