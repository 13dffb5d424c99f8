"""The API's OpenAPI document, made complete enough to generate clients from and to test the
server against (tests/gateway/test_openapi_*.py), where FastAPI's own would mislead or say
too little:
- invalid requests are answered 400 (INVALID_REQUEST), not 422;
- the routes that act for the signed-in user say that they need the `access_token` cookie
  (deps.user_call reads it itself, so FastAPI does not see it);
- every error status each operation may answer is listed with its body schema and the
  codes it may carry (responses.py: a route declares its own codes, the ones every route
  of its kind may answer are added here);
- routes a browser navigates to (share links' `/s/<token>`, single sign-on's login and
  callback; `responses.page_responses`) answer their own refusals, and their backends'
  failures, with an HTML page of the error's status: such a status lists every code it
  may carry in `x-error-codes` as any other, and splits them by body: `text/html` (a
  string) names the codes answered as a page in its own `x-error-codes`, and
  `application/json` (ErrorReply, examples by code) is there only for the codes the
  gateway answers as JSON around the route (431, 500, 503 SERVER_BUSY; 408 and 413 with a
  body; 400 INVALID_REQUEST only where the route declares it with error_responses, since
  a page reads its parameters itself and a refusal of them is a page too). A status with
  page codes alone has no JSON body. Redirects are 302 with `Location`
  (`responses.redirect_response`);
- limits a deployment sets (the largest file, v1 and v2) come from the settings;
- operationIds are the routes' own (`operation_id=`, camelCase); FastAPI's generated ones
  (`get_file_api_v2_files__file_id__get`) are refused at start."""

from __future__ import annotations

import re
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

from .cookies import ACCESS_TOKEN
from .deps import user_call
from .errors import ERROR_CODE, FILES_PREFIX, error_body
from .responses import CODES_KEY, PAGE_CODES_KEY
from .schemas import ErrorReply, FileErrorReply, decimal_at_most
from .settings import GatewaySettings

ACCESS_COOKIE_SCHEME = "accessTokenCookie"
_OPERATION_ID = re.compile(r"^[a-z][A-Za-z0-9]*$")
LIMIT_KEY = "x-dropfile-limit"
_ERROR_SCHEMAS: dict[str, type[BaseModel]] = {
    "ErrorReply": ErrorReply,
    "FileErrorReply": FileErrorReply,
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$", "examples": ["1"]},
    }
}
# What every operation may answer, whatever it does: a request head too large, an
# unexpected error, a gateway with all its connections taken.
_EVERY_OPERATION = ("HEADERS_TOO_LARGE", "INTERNAL", "SERVER_BUSY")
# ... those that call a backend (every /api route).
_CALLS_BACKENDS = ("BACKEND_UNAVAILABLE", "BACKEND_TIMEOUT")
# ... those with a body or parameters to check.
_HAS_INPUT = ("INVALID_REQUEST",)
# ... those with a body to read.
_HAS_BODY = ("REQUEST_TIMEOUT", "REQUEST_TOO_LARGE")
# ... those that act for the signed-in user (the services check the token, and whether its
# session was signed out).
_SIGNED_IN = ("ACCESS_TOKEN_MISSING", "ACCESS_TOKEN_INVALID", "SESSION_CHECK_UNAVAILABLE")
# ... and, as pages, what every page route may answer: it calls a backend, and renders
# every refusal of the call (errors.rpc_error_answer's statuses) as a page.
_PAGE_CALLS_BACKENDS = ("BACKEND_UNAVAILABLE", "BACKEND_TIMEOUT", "INTERNAL")
_PAGE_SCHEMA = {"type": "string"}


def adjust_openapi(app: FastAPI, routers: Iterable[APIRouter], settings: GatewaySettings) -> None:
    """Makes `app.openapi()` return the adjusted document (built once, on first use)."""
    generate = app.openapi
    routes = [route for router in routers for route in router.routes if isinstance(route, APIRoute)]
    for route in routes:
        if not route.operation_id or not _OPERATION_ID.fullmatch(route.operation_id):
            raise ValueError(f"route {route.path} needs operation_id= in camelCase")
    signed_in = {
        (method.lower(), route.path)
        for route in routes
        if _depends_on(route.dependant, user_call)
        for method in route.methods or ()
    }
    limits = {
        "max_file_size_bytes": settings.max_file_size_bytes,
        "v2_max_file_size_bytes": settings.v2_max_file_size_bytes,
    }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            _answer_400_not_422(schema)
            _require_access_cookie(schema, signed_in)
            _declare_limits(schema, limits)
            _declare_errors(schema, signed_in)
            _whole_bounds(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _depends_on(dependant: Dependant, call: Any) -> bool:
    return any(sub.call is call or _depends_on(sub, call) for sub in dependant.dependencies)


def _operations(schema: dict[str, Any]) -> Iterable[tuple[str, str, dict[str, Any]]]:
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                yield path, method, operation


def _answer_400_not_422(schema: dict[str, Any]) -> None:
    for _, _, operation in _operations(schema):
        operation["responses"].pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)


def _require_access_cookie(schema: dict[str, Any], operations: set[tuple[str, str]]) -> None:
    schema.setdefault("components", {}).setdefault("securitySchemes", {})[ACCESS_COOKIE_SCHEME] = {
        "type": "apiKey",
        "in": "cookie",
        "name": ACCESS_TOKEN,
        "description": "The session's access token (set by sign-in and refresh)",
    }
    for path, method, operation in _operations(schema):
        if (method, path) in operations:
            operation["security"] = [{ACCESS_COOKIE_SCHEME: []}]


def _declare_limits(node: Any, limits: dict[str, int]) -> None:
    """Fills the deployment's limits into the schemas that carry `x-dropfile-limit`: a byte
    count v1 sends as a string or an integer (schemas.byte_count_schema), or an integer."""
    if isinstance(node, list):
        for item in node:
            _declare_limits(item, limits)
        return
    if not isinstance(node, dict):
        return
    setting = node.pop(LIMIT_KEY, None)
    if setting is not None:
        limit = limits[setting]
        for variant in node.get("anyOf", [node]):
            if variant.get("type") == "string":
                variant["pattern"] = f"^0*(?:{decimal_at_most(limit)})$"
            elif variant.get("type") == "integer":
                variant["maximum"] = limit
    for value in node.values():
        _declare_limits(value, limits)


def _declare_errors(schema: dict[str, Any], signed_in: set[tuple[str, str]]) -> None:
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, model in _ERROR_SCHEMAS.items():
        schemas.setdefault(
            name, model.model_json_schema(ref_template="#/components/schemas/{model}")
        )
    for path, method, operation in _operations(schema):
        responses: dict[str, Any] = operation["responses"]
        codes: list[str] = []
        page_codes: list[str] = []
        for key in list(responses):
            declared = responses[key].pop(CODES_KEY, None)
            on_page = responses[key].pop(PAGE_CODES_KEY, None)
            codes.extend(declared or ())
            page_codes.extend(on_page or ())
            if (declared is not None or on_page is not None) and not responses[key].get("content"):
                del responses[key]  # written below, with every code of its status
        is_page = bool(page_codes)
        has_body = "requestBody" in operation
        has_input = has_body or any(
            parameter.get("in") in ("path", "query")
            for parameter in operation.get("parameters", [])
        )
        codes += _HAS_INPUT if has_input and not is_page else ()
        codes += _HAS_BODY if has_body else ()
        codes += _SIGNED_IN if (method, path) in signed_in else ()
        codes += _CALLS_BACKENDS if path.startswith("/api/") and not is_page else ()
        codes += _EVERY_OPERATION
        page_codes += _PAGE_CALLS_BACKENDS if is_page else ()
        json_by_status = _by_status(codes)
        page_by_status = _by_status(page_codes)
        body = "FileErrorReply" if path.startswith(FILES_PREFIX) else "ErrorReply"
        for status in sorted({*json_by_status, *page_by_status}):
            responses[str(status)] = _error_response(
                path,
                status,
                json_by_status.get(status, []),
                page_by_status.get(status, []),
                body,
                responses.get(str(status)),
            )
        operation["responses"] = dict(sorted(responses.items()))


def _by_status(codes: list[str]) -> dict[int, list[str]]:
    by_status: dict[int, list[str]] = {}
    for code in codes:
        listed = by_status.setdefault(ERROR_CODE[code].status, [])
        if code not in listed:
            listed.append(code)
    return by_status


def _error_response(
    path: str,
    status: int,
    codes: list[str],
    page_codes: list[str],
    body: str,
    declared: dict[str, Any] | None,
) -> dict[str, Any]:
    reference = {"$ref": f"#/components/schemas/{body}"}
    content_schema: dict[str, Any] = reference
    own_content: dict[str, Any] = dict((declared or {}).get("content") or {})
    if "application/json" in own_content:
        # The route answers this status with a body of its own (readiness): that, or an
        # error the gateway answers for it.
        own = own_content.pop("application/json")["schema"]
        content_schema = {"anyOf": [own, reference]}
    every_code = [*page_codes, *(code for code in codes if code not in page_codes)]

    def meaning(code: str) -> str:
        page = code in page_codes
        as_what = (" (a page, or JSON)" if code in codes else " (a page)") if page else ""
        return f"`{code}` ({ERROR_CODE[code].meaning}){as_what}"

    content: dict[str, Any] = dict(own_content)
    if page_codes:
        content["text/html"] = {"schema": _PAGE_SCHEMA, CODES_KEY: page_codes}
    if codes:
        content["application/json"] = {
            "schema": content_schema,
            "examples": {
                code: {
                    "summary": ERROR_CODE[code].meaning,
                    "value": error_body(path, _example_message(code), code),
                }
                for code in codes
            },
        }
    response: dict[str, Any] = {
        "description": f"{HTTPStatus(status).phrase}: {'; '.join(map(meaning, every_code))}",
        CODES_KEY: every_code,
        "content": content,
    }
    if status in (429, 503):
        response["headers"] = _RETRY_AFTER
    return response


def _example_message(code: str) -> str:
    meaning = ERROR_CODE[code].meaning
    return meaning[0].upper() + meaning[1:]


def _whole_bounds(node: Any) -> None:
    """pydantic writes `minimum: 0.0` for integers bounded by ge=0: integers stay integers."""
    if isinstance(node, list):
        for item in node:
            _whole_bounds(item)
    elif isinstance(node, dict):
        for key in ("minimum", "maximum"):
            value = node.get(key)
            if isinstance(value, float) and value.is_integer():
                node[key] = int(value)
        for value in node.values():
            _whole_bounds(value)
