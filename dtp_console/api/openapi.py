"""The OpenAPI 3.1 document of every route, served at `GET /api/openapi.json`.

Body schemas come from the very pydantic models the handlers validate with, so
the document cannot drift from what the server accepts.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from dtp_console import __version__
from dtp_console.api.console_routes import AffinePut, DeviceMapPut
from dtp_console.api.registry_routes import TwinPatch
from dtp_console.registry.model import (
    ServiceRecord,
    ServiceSpec,
    StatusChange,
    TwinFile,
    TwinRecord,
)

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "Bad query or malformed JSON",
        401: "No valid bearer token",
        403: "The token's role or tenants do not allow it",
        404: "Unknown (or not visible to this token)",
        409: "Conflicts with the twin's lifecycle or another tenant's id",
        412: "The device map changed since the edit started (`current`, `etag`, `keys`)",
        413: "Body larger than api.max_body_bytes",
        415: "Content-Type is not application/json",
        422: "A field is invalid; `problems` names each field path",
        428: "If-Match is required (the etag of the device map the edit started from)",
        503: "The registry is not running or its store is unavailable",
    }
    return {str(code): _json(_ref("Error"), reasons[code]) for code in codes}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_TWIN_ID = {
    "name": "twin_id",
    "in": "path",
    "required": True,
    "description": "Twin id (`dt:Lift_001`), percent-encoded",
    "schema": {"type": "string", "minLength": 1},
}
_STATUS = {"type": "string", "enum": ["instantiated", "active", "deprecated"]}
_READ = (400, 401, 403, 503)
_WRITE = (400, 401, 403, 409, 413, 415, 422, 503)


def _components() -> dict[str, Any]:
    _, defs = models_json_schema(
        [
            (TwinFile, "validation"),
            (TwinPatch, "validation"),
            (ServiceSpec, "validation"),
            (TwinRecord, "serialization"),
            (ServiceRecord, "serialization"),
            (StatusChange, "serialization"),
            (DeviceMapPut, "validation"),
            (AffinePut, "validation"),
        ],
        by_alias=True,
        ref_template=_REF,
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "problems": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    }
    schemas["TwinResult"] = {
        "type": "object",
        "required": ["twin"],
        "properties": {
            "twin": _ref("TwinRecord"),
            "created": {"type": "boolean"},
            "changed": {"type": "boolean"},
            "deleted": {"type": "string", "enum": ["soft", "hard"]},
        },
    }
    return schemas


_PLANT = {
    "name": "plant",
    "in": "path",
    "required": True,
    "description": "Plant name (case-insensitive), percent-encoded",
    "schema": {"type": "string", "minLength": 1},
}
_CONSOLE_WRITE = (400, 401, 403, 404, 413, 415, 422, 503)


def _console_paths(bearer: list[dict[str, list[str]]]) -> dict[str, Any]:
    """`/api/console/...`: what `dtp-console attach` reads and writes (issue #21)."""
    stream = {"text/event-stream": {"schema": {"type": "string"}}}
    return {
        "/api/console/session": {
            "get": {
                "summary": "The engine, the caller, the config (secrets redacted), plants, maps",
                "security": bearer,
                "responses": {
                    "200": _json({"type": "object"}, "The attach session (protocol 1)"),
                    **_errors(401, 403, 404),
                },
            }
        },
        "/api/console/state": {
            "get": {
                "summary": "Server-Sent Events: snapshot, delta (≤ 10 Hz), log, store, twin, maps",
                "description": (
                    "A `snapshot` of every plant's summary (devices only for the plants "
                    "named in `devices`), then `delta` frames of what changed at most every "
                    "100 ms (a removed device is null), and `log`, `store`, `twin` and "
                    "`maps` events; a `: hb` comment every 5 s. A client that falls "
                    "`api.stream_queue` frames behind is disconnected (it reconnects for a "
                    "fresh snapshot)."
                ),
                "security": bearer,
                "parameters": [_query("devices", "Comma-separated plants whose devices to send")],
                "responses": {
                    "200": {"description": "The state stream", "content": stream},
                    **_errors(400, 401, 403, 404, 503),
                },
            }
        },
        "/api/console/plants/{plant}/device-map": {
            "put": {
                "summary": "Save a plant's device map (file and running bridge) if unchanged",
                "security": bearer,
                "parameters": [
                    _PLANT,
                    {
                        "name": "If-Match",
                        "in": "header",
                        "required": True,
                        "description": "The etag of the map the edit started from",
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("DeviceMapPut")}},
                },
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["mapping", "etag"],
                            "properties": {
                                "mapping": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                                "etag": {"type": "string"},
                            },
                        },
                        "The map now in force and its etag",
                    ),
                    **_errors(*_CONSOLE_WRITE, 412, 428),
                },
            }
        },
        "/api/console/plants/{plant}/affine": {
            "put": {
                "summary": "Store and apply a plant's vendor → twinzo affine",
                "security": bearer,
                "parameters": [_PLANT],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("AffinePut")}},
                },
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["plant", "values", "written", "applied"],
                            "properties": {
                                "plant": {"type": "string"},
                                "values": {
                                    "type": "object",
                                    "additionalProperties": {"type": "number"},
                                },
                                "written": {"type": ["string", "null"]},
                                "applied": {"type": "boolean"},
                            },
                        },
                        "What was stored and applied",
                    ),
                    **_errors(*_CONSOLE_WRITE),
                },
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    """The document (built on each call; it is small)."""
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    paths: dict[str, Any] = {
        "/api/registry/twins": {
            "get": {
                "summary": "Twins of the token's tenants",
                "security": bearer,
                "parameters": [
                    _query("tenant", "Only this tenant (must be granted to the token)"),
                    _query("status", "Only this lifecycle status", _STATUS),
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"twins": {"type": "array", "items": _ref("TwinRecord")}},
                        },
                        "Twins ordered by id",
                    ),
                    **_errors(*_READ),
                },
            },
            "post": {
                "summary": "Register or re-attach a twin (upsert by `@id`), as twin.yaml",
                "security": bearer,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("TwinFile")}},
                },
                "responses": {
                    "201": _json(_ref("TwinResult"), "Registered for the first time"),
                    "200": _json(_ref("TwinResult"), "Updated (or unchanged)"),
                    **_errors(*_WRITE),
                },
            },
        },
        "/api/registry/twins/{twin_id}": {
            "parameters": [_TWIN_ID],
            "get": {
                "summary": "One twin with its status history",
                "security": bearer,
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "twin": _ref("TwinRecord"),
                                "status_history": {
                                    "type": "array",
                                    "items": _ref("StatusChange"),
                                },
                            },
                        },
                        "The twin",
                    ),
                    **_errors(*_READ, 404),
                },
            },
            "patch": {
                "summary": "Change lifecycle status, interfaces and/or dependencies",
                "security": bearer,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("TwinPatch")}},
                },
                "responses": {
                    "200": _json(_ref("TwinResult"), "The twin after the change"),
                    **_errors(*_WRITE, 404),
                },
            },
            "delete": {
                "summary": "Soft delete (`?soft=true`: deprecated) or remove for good",
                "security": bearer,
                "parameters": [
                    _query(
                        "soft",
                        "true: set deprecated; false or absent: hard delete",
                        {"type": "string", "enum": ["true", "false"]},
                    )
                ],
                "responses": {
                    "200": _json(_ref("TwinResult"), "What was deleted"),
                    **_errors(*_READ, 404, 409),
                },
            },
        },
        "/api/registry/services": {
            "get": {
                "summary": "Services of the token's tenants",
                "security": bearer,
                "parameters": [
                    _query("category", "Only this category"),
                    _query("tenant", "Only this tenant (must be granted to the token)"),
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "services": {"type": "array", "items": _ref("ServiceRecord")}
                            },
                        },
                        "Services ordered by id",
                    ),
                    **_errors(*_READ),
                },
            },
            "post": {
                "summary": "Register or update a service (upsert by `id`)",
                "security": bearer,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ServiceSpec")}},
                },
                "responses": {
                    "201": _json(
                        {"type": "object", "properties": {"service": _ref("ServiceRecord")}},
                        "Registered",
                    ),
                    "200": _json(
                        {"type": "object", "properties": {"service": _ref("ServiceRecord")}},
                        "Updated",
                    ),
                    **_errors(*_WRITE),
                },
            },
        },
        "/api/portal/stream": {
            "get": {
                "summary": "Server-Sent Events: twin.update, twin.delete, service.update",
                "description": (
                    "Each event has an `id:` (`<boot>-<seq>`) and a JSON `data:`. A comment "
                    "line is sent as heartbeat. Send `Last-Event-ID` to resume from the "
                    "replay buffer; a `stream.gap` event says events were missed. A client "
                    "that falls `api.stream_queue` events behind is disconnected."
                ),
                "security": bearer,
                "parameters": [
                    _query("tenant", "Only this tenant (must be granted to the token)"),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The event stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_errors(*_READ),
                },
            }
        },
        **_console_paths(bearer),
        "/healthz": {
            "get": {
                "summary": "Process liveness (open to loopback peers unless configured off)",
                "security": [*bearer, {}],
                "responses": {
                    "200": _json({"type": "object"}, "The process is up"),
                    **_errors(401, 403),
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: workers started, each bridge's MQTT state, store health",
                "security": [*bearer, {}],
                "responses": {
                    "200": _json({"type": "object"}, "Ready"),
                    "503": _json({"type": "object"}, "Not ready (the body says what is not)"),
                    **_errors(401, 403),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus text format (open to loopback peers unless configured off)",
                "security": [*bearer, {}],
                "responses": {
                    "200": {
                        "description": "Metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(401, 403),
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dtp-console API",
            "version": __version__,
            "description": (
                "The twin registry, its live change stream, the attached console "
                "(`/api/console`), health and metrics."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": _components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
