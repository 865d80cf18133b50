"""The HTTP API's OpenAPI 3 document, served at ``/v1/openapi.json``.

Generated, so it cannot drift: the paths and methods from the app's own
routes, each request body's schema from the attrs class the server
structures it into (:mod:`fleetcore.server.bodies`), errors as the one
shape every refusal has. The schemas say what the types are; the server's
validators say more (ranges, choices), and refuse the rest with a 400
naming the key. ``BODIES`` names the body of every route that takes one: a
new route that writes must be added there (a test fails until it is).
"""

from __future__ import annotations

import datetime as dt
import re
import types
import typing
from collections.abc import Iterable
from typing import Any

import attrs

from fleetcore import __version__
from fleetcore.server import bodies as b
from fleetcore.server.secrets import SecretRequest

ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "field": {"type": "string", "nullable": True}},
    "required": ["error", "field"],
}

BODIES: dict[tuple[str, str], type | None] = {
    ("POST", "/v1/enroll"): b.EnrollRequest,
    ("POST", "/v1/devices/{device_id}/status"): b.StatusReport,
    ("POST", "/v1/devices/{device_id}/history"): b.HistoryBody,
    ("POST", "/v1/devices/{device_id}/credential"): None,
    ("POST", "/v1/devices/{device_id}/allow-reenroll"): b.ReenrollRequest,
    ("POST", "/v1/devices/{device_id}/accept"): b.ActionRequest,
    ("POST", "/v1/devices/{device_id}/resume"): b.ActionRequest,
    ("POST", "/v1/devices/{device_id}/revoke"): b.ActionRequest,
    ("POST", "/v1/devices/{device_id}/wake"): b.ActionRequest,
    ("POST", "/v1/devices/{device_id}/check"): b.ActionRequest,
    ("POST", "/v1/devices/{device_id}/safe-mode"): b.ActionRequest,
    ("POST", "/v1/devices/{device_id}/logs/request"): None,
    ("POST", "/v1/devices/{device_id}/logs"): b.LogUpload,
    ("PUT", "/v1/devices/{device_id}/lock"): b.LockRequest,
    ("DELETE", "/v1/devices/{device_id}/lock"): b.ActionRequest,
    ("PUT", "/v1/devices/{device_id}/override"): b.OverrideRequest,
    ("PUT", "/v1/fleet/pin"): b.PinRequest,
    ("DELETE", "/v1/fleet/pin"): b.ActionRequest,
    ("PUT", "/v1/fleet/maintenance-window"): b.WindowRequest,
    ("POST", "/v1/rollouts"): b.RolloutRequest,
    ("POST", "/v1/rollouts/{rollout_id}/{action}"): b.ActionRequest,
    ("POST", "/v1/tokens"): b.TokenRequest,
    ("DELETE", "/v1/tokens/{token_id}"): b.ActionRequest,
    ("POST", "/v1/enrollment-tokens"): b.EnrollmentTokenRequest,
    ("PUT", "/v1/secrets/{role}/{name}"): SecretRequest,
    ("DELETE", "/v1/secrets/{role}/{name}"): b.ActionRequest,
    ("PUT", "/v1/device-secrets/{device_id}/{name}"): SecretRequest,
    ("DELETE", "/v1/device-secrets/{device_id}/{name}"): b.ActionRequest,
    ("PUT", "/v1/fleet/blast-radius"): b.BlastRadiusRequest,
    ("POST", "/v1/fleet/halt-all"): b.HaltRequest,
    ("POST", "/v1/fleet/resume-all"): b.ActionRequest,
    ("POST", "/v1/hooks/git"): None,
    ("POST", "/v1/bare"): None,
}
"""The body each writing route structures, by (method, path); None: none."""

PUBLIC = {"/v1/enroll", "/v1/health", "/v1/bare", "/metrics", "/v1/openapi.json"}
"""Routes that need no credential."""


def schema_of(tp: Any, components: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema for a type of the body classes."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return {}
    if tp is type(None):
        return {"nullable": True}
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        schema = schema_of(inner[0], components) if len(inner) == 1 else {
            "oneOf": [schema_of(a, components) for a in inner]
        }  # fmt: skip
        if type(None) in args:
            schema = {"allOf": [schema], "nullable": True} if "$ref" in schema else {
                **schema, "nullable": True
            }  # fmt: skip
        return schema
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if tp is dt.datetime:
        return {"type": "string", "format": "date-time"}
    if tp is dt.time:
        return {"type": "string", "example": "02:00"}
    if origin in (list, tuple) or tp in (list, tuple):
        item = args[0] if args else Any
        return {"type": "array", "items": schema_of(item, components)}
    if origin is dict or tp is dict:
        value = args[1] if len(args) == 2 else Any
        return {"type": "object", "additionalProperties": schema_of(value, components)}
    if attrs.has(tp):
        name = tp.__name__
        if name not in components:
            components[name] = {}  # a placeholder while its fields are worked out
            hints = typing.get_type_hints(tp)
            fields = attrs.fields(tp)
            components[name] = {
                "type": "object",
                "properties": {
                    f.name: schema_of(hints[f.name], components) for f in fields if f.init
                },
                "required": [f.name for f in fields if f.init and f.default is attrs.NOTHING],
                "additionalProperties": False,
            }
            if not components[name]["required"]:
                del components[name]["required"]
        return {"$ref": f"#/components/schemas/{name}"}
    raise TypeError(f"no JSON schema for {tp!r}")


def _parameters(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", path)
    ]


def document(routes: Iterable[tuple[str, Iterable[str]]]) -> dict[str, Any]:
    """The OpenAPI document of ``routes`` ((path, methods) of the app's API)."""
    components: dict[str, Any] = {"Error": ERROR}
    paths: dict[str, Any] = {}
    for path, methods in routes:
        for method in sorted(set(methods) - {"HEAD"}):
            operation: dict[str, Any] = {
                "operationId": f"{method.lower()}_{re.sub(r'[^a-z0-9]+', '_', path.lower())}",
                "parameters": _parameters(path),
                "responses": {
                    "2XX": {"description": "done"},
                    "3XX": {"description": "not modified"},
                    "4XX": {
                        "description": "refused: one line, and the key it is about",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    },
                },
            }
            if path not in PUBLIC:
                operation["security"] = [{"bearer": []}]
            body = BODIES.get((method, path))
            if body is not None:
                operation["requestBody"] = {
                    "required": method != "DELETE",
                    "content": {"application/json": {"schema": schema_of(body, components)}},
                }
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "fleetcore control server", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
