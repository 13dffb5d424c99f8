"""The API's OpenAPI document, where FastAPI's own would mislead: invalid requests are
answered 400, not 422, and the routes that act for the signed-in user say that they need
the `access_token` cookie (deps.user_call reads it itself, so FastAPI does not see it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from .cookies import ACCESS_TOKEN
from .deps import user_call

ACCESS_COOKIE_SCHEME = "accessTokenCookie"


def adjust_openapi(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Makes `app.openapi()` return the adjusted document (built once, on first use)."""
    generate = app.openapi
    signed_in = {
        (method.lower(), route.path)
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and _depends_on(route.dependant, user_call)
        for method in route.methods
    }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            _answer_400_not_422(schema)
            _require_access_cookie(schema, signed_in)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _depends_on(dependant: Dependant, call: Any) -> bool:
    return any(sub.call is call or _depends_on(sub, call) for sub in dependant.dependencies)


def _answer_400_not_422(schema: dict[str, Any]) -> None:
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)


def _require_access_cookie(schema: dict[str, Any], operations: set[tuple[str, str]]) -> None:
    schema.setdefault("components", {}).setdefault("securitySchemes", {})[ACCESS_COOKIE_SCHEME] = {
        "type": "apiKey",
        "in": "cookie",
        "name": ACCESS_TOKEN,
        "description": "The session's access token (set by sign-in and refresh)",
    }
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if (method, path) in operations:
                operation["security"] = [{ACCESS_COOKIE_SCHEME: []}]
