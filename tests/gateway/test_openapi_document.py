"""The OpenAPI document the gateway serves: valid OpenAPI 3.1 (openapi-spec-validator), with
operationIds that read well, every request field bounded (type, format, lengths, patterns,
enums, array sizes: parameters in the path, query and cookies, and bodies of every media
type), every error status with its body schema and codes (JSON, or the HTML page of a
route browsers navigate to), redirects with their Location, and links from creating an
upload to the operations that take its id."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from gateway.errors import ERROR_CODE


@pytest.fixture(scope="module")
def document(gateway_url) -> dict[str, Any]:
    return httpx.get(f"{gateway_url}/openapi.json", timeout=30).json()


def _operations(document: dict[str, Any]):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any error
    broken = {**document, "paths": {"/x": {"get": {"responses": {"200": {}}}}}}
    with pytest.raises(OpenAPIValidationError):
        validate(broken)  # the validator does check (a response needs a description)


def test_operation_ids_read_well_and_are_unique(document):
    ids = [operation["operationId"] for _, _, operation in _operations(document)]
    assert len(ids) == len(set(ids)) == 32
    for operation_id in ids:
        assert re.fullmatch(r"[a-z][A-Za-z0-9]+", operation_id), operation_id
    assert {"createUpload", "getPartUrls", "recordParts", "completeUploadV2", "signIn"} <= set(ids)
    assert {
        "listFilesV2",
        "createShareLink",
        "listShareLinks",
        "revokeShareLink",
        "openShareLink",
        "unlockShareLink",
        "getSignInOptions",
        "startOidcSignIn",
        "finishOidcSignIn",
    } <= set(ids)


def _check_bounded(document: dict[str, Any], schema: dict[str, Any], where: str) -> None:
    schema = _resolve(document, schema)
    if "anyOf" in schema:
        for variant in schema["anyOf"]:
            _check_bounded(document, variant, where)
        return
    kind = schema.get("type")
    if kind == "object":
        assert schema.get("additionalProperties") is False, where
        for name, field in schema["properties"].items():
            _check_bounded(document, field, f"{where}.{name}")
    elif kind == "array":
        assert "maxItems" in schema, where
        _check_bounded(document, schema["items"], f"{where}[]")
    elif kind == "string":
        assert "enum" in schema or "pattern" in schema, where
        assert "enum" in schema or "maxLength" in schema or "{" in schema["pattern"], where
    elif kind == "integer":
        assert "minimum" in schema and "maximum" in schema, where
    else:
        assert kind in ("boolean", "null"), where


def test_every_request_field_is_bounded(document):
    parameters = bodies = 0
    for path, method, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            assert parameter["in"] in ("path", "query", "cookie"), (path, parameter)
            if parameter["in"] == "cookie":
                # The server's own (session, single sign-on flow): one stale or garbled is
                # answered as if missing (sign-out clears it all the same), not refused.
                continue
            where = f"{method} {path} {parameter['in']} {parameter['name']}"
            if parameter["in"] == "path":
                assert parameter["required"] is True, where
                if parameter["name"].endswith("_id"):
                    assert parameter["schema"]["format"] == "uuid", where
            _check_bounded(document, parameter["schema"], where)
            parameters += 1
        body = operation.get("requestBody")
        if body:
            assert body["content"], f"{method} {path}"
            for media_type, content in body["content"].items():
                where = f"{method} {path} {media_type}"
                schema = content["schema"]
                _check_bounded(document, schema, where)
                assert _resolve(document, schema).get("examples"), f"{where}: no example"
                bodies += 1
    assert (parameters, bodies) == (19, 15)


def test_the_deployments_limits_are_stated(document):
    schemas = document["components"]["schemas"]
    v1 = schemas["UploadUrlsBody"]["properties"]["file_size"]["anyOf"]
    assert {"type": "integer", "minimum": 0, "maximum": 1024**3} in v1  # the default 1 GiB
    assert re.fullmatch(v1[0]["pattern"], "01073741824")
    assert not re.fullmatch(v1[0]["pattern"], "1073741825")
    assert schemas["CreateUploadBody"]["properties"]["size"]["maximum"] == 5 * 1024**4
    assert "x-dropfile-limit" not in str(document)


# Routes a browser navigates to, which answer their refusals with HTML pages.
PAGE_ROUTES = {"/s/{token}", "/api/v2/auth/oidc/login", "/api/v2/auth/oidc/callback"}


def test_every_error_status_has_its_body_schema_and_codes(document):
    pages = set()
    for path, method, operation in _operations(document):
        errors = {s: r for s, r in operation["responses"].items() if int(s) >= 400}
        assert {"500", "503"} <= set(errors), path
        for status, response in errors.items():
            codes = response["x-error-codes"]
            assert codes, (path, status)
            assert len(codes) == len(set(codes)), (path, status)
            for code in codes:
                assert ERROR_CODE[code].status == int(status), (path, code)
                assert f"`{code}`" in response["description"]
            assert set(response["content"]) <= {"application/json", "text/html"}, (path, status)
            as_json: list[str] = []
            if "application/json" in response["content"]:
                content = response["content"]["application/json"]
                schema = content["schema"]
                references = [schema] if "$ref" in schema else schema["anyOf"]
                body = "FileErrorReply" if path.startswith("/api/files/") else "ErrorReply"
                assert {"$ref": f"#/components/schemas/{body}"} in references, (path, status)
                as_json = list(content["examples"])
                for code in as_json:
                    example = content["examples"][code]["value"]
                    assert example["code"] == code and example["error"]
                    assert ("success" in example) == path.startswith("/api/files/")
            as_page: list[str] = []
            if "text/html" in response["content"]:
                page = response["content"]["text/html"]
                assert page["schema"] == {"type": "string"}, (path, status)
                as_page = page["x-error-codes"]
                assert as_page, (path, status)
                pages.add((method, path))
            # Each code in the body it comes in (INTERNAL: a page's, or the edge's JSON).
            assert set(as_json) | set(as_page) == set(codes), (path, status)
            if status in ("429", "503"):
                assert response["headers"]["Retry-After"]["required"] is True
    assert {path for _, path in pages} == PAGE_ROUTES
    assert len(pages) == 4
    # The gateway's own refusals around a page are JSON all the same.
    for method, path in pages:
        responses = document["paths"][path][method]["responses"]
        assert "SERVER_BUSY" in responses["503"]["content"]["application/json"]["examples"]
        assert "HEADERS_TOO_LARGE" in responses["431"]["content"]["application/json"]["examples"]
    reply = document["components"]["schemas"]["ErrorReply"]
    assert set(reply["required"]) == {"error", "code"}
    file_reply = document["components"]["schemas"]["FileErrorReply"]
    assert {"error", "code"} <= set(file_reply["required"])


def test_redirects_say_where_they_go(document):
    redirecting = set()
    for path, _method, operation in _operations(document):
        for status, response in operation["responses"].items():
            if status.startswith("3"):
                assert status == "302", (path, status)
                assert "content" not in response, path
                assert response["headers"]["Location"]["required"] is True, path
                redirecting.add(operation["operationId"])
    assert redirecting == {
        "openShareLink",
        "unlockShareLink",
        "startOidcSignIn",
        "finishOidcSignIn",
    }


def test_signed_in_operations_need_the_cookie_and_say_401(document):
    for _path, _, operation in _operations(document):
        if operation.get("security"):
            assert operation["security"] == [{"accessTokenCookie": []}]
            assert "ACCESS_TOKEN_MISSING" in operation["responses"]["401"]["x-error-codes"]
    scheme = document["components"]["securitySchemes"]["accessTokenCookie"]
    assert scheme == {**scheme, "type": "apiKey", "in": "cookie", "name": "access_token"}


def test_creating_an_upload_links_to_the_operations_on_its_id(document):
    ids = {operation["operationId"] for _, _, operation in _operations(document)}
    for path, method, status, expression in [
        ("/api/v2/files", "post", "201", "$response.body#/fileId"),
        ("/api/files/get-upload-urls", "post", "200", "$request.body#/file_id"),
    ]:
        links = document["paths"][path][method]["responses"][status]["links"]
        targets = {link["operationId"] for link in links.values()}
        assert {"getFile", "getUploadState", "getPartUrls", "recordParts"} <= targets
        assert targets <= ids
        for link in links.values():
            assert link["parameters"] == {"file_id": expression}
