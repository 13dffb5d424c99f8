"""A property-based test of the API against its own OpenAPI document (schemathesis, every
check it has): requests generated from the document, valid and invalid, are sent to the real
gateway in front of the real services (S3 on moto) as a signed-up user; no answer may be a
5xx, break its documented schema (status, content type, body, headers), refuse a request the
document allows, or accept one it does not.

The stack here runs as the document says of it: the upload service's file size limits are
the gateway's (which the document states), and no per-user quota or sign-in delay (a user's
quota is state the document cannot know; 413 would be right, but not for every request).
Three rules relate fields to each other, which JSON Schema cannot say and the fields'
descriptions do: a sign-up password of at most 72 bytes in UTF-8 (it says 72 characters),
part-urls' last_part not before first_part and at most 1,000 after it, and v2 completion's
`parts` only with `uploadId`. Generated bodies are kept to those rules (hooks below).
Uploads created here get ids of their own (uuid4, below), so that the ids generated for the
other operations name files that do not exist (404), not files whose layout a request
would have to match: per-operation testing cannot know that layout (its part count and
sizes), which tests/gateway/test_v2_uploads.py and test_error_codes.py cover.
`GET /api/v2/events` streams for minutes; tests/gateway/test_live_events.py covers it.

The budget (examples per operation) keeps the run to a minute or two."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from gateway.app import create_app
from gateway.schemas import UUID_PATTERN
from gateway.settings import GatewaySettings
from services.upload.server import create_server
from services.upload.settings import UploadSettings
from tests.conftest import settings_for
from tests.fixtures.gateway import serve_gateway

from .conftest import sign_up

EXAMPLES_PER_OPERATION = 80
MIB = 1024 * 1024
LIMITS = {"max_file_size_bytes": 64 * MIB, "v2_max_file_size_bytes": 2 * 1024 * MIB}


CREATING = {"/api/files/get-upload-urls": "file_id", "/api/v2/files": "fileId"}


def _fresh_file_id(context: Any, body: Any) -> Any:
    """A valid generated id becomes a fresh one (an invalid one, of a negative case, stays)."""
    field = CREATING.get(context.operation.path)
    if field and isinstance(body, dict) and re.fullmatch(UUID_PATTERN, str(body.get(field))):
        return {**body, field: str(uuid.uuid4())}
    return body


@pytest.fixture(scope="module")
def documented_stack(common_settings, auth_address, events_address) -> Iterator[str]:
    upload = create_server(
        settings_for(UploadSettings, common_settings, user_quota_bytes=0, **LIMITS), port=0
    )
    upload.start()
    try:
        gateway = settings_for(
            GatewaySettings,
            common_settings,
            auth_service_addr=auth_address,
            upload_service_addr=f"127.0.0.1:{upload.port}",
            events_service_addr=events_address,
            throttled_answer_delay_seconds=0,
            **LIMITS,
        )
        with serve_gateway(gateway) as url:
            yield url
    finally:
        upload.stop(0).wait()


# The signed-up user's access token, which every case carries (SignedUpUser below).
SESSION: dict[str, str] = {}


@pytest.fixture(scope="module")
def signed_up(documented_stack) -> None:
    with httpx.Client(base_url=documented_stack, timeout=60) as client:
        response = sign_up(client)
        assert response.status_code == 200, response.text
        SESSION["access_token"] = response.cookies["access_token"]


def _keep_password_within_bcrypt(context: Any, body: Any) -> bool:
    if context.operation.path != "/api/auth/signup" or not isinstance(body, dict):
        return True
    user = body.get("user")
    password = user.get("password") if isinstance(user, dict) else None
    return not isinstance(password, str) or len(password.encode("utf-8", "replace")) <= 72


def _keep_part_range(context: Any, body: Any) -> bool:
    if not context.operation.path.endswith("/part-urls") or not isinstance(body, dict):
        return True
    first, last = body.get("first_part"), body.get("last_part")
    if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in (first, last)):
        return True
    return first <= last < first + 1000


def _keep_parts_with_upload_id(context: Any, body: Any) -> bool:
    if not context.operation.path.endswith("/complete") or not isinstance(body, dict):
        return True
    return body.get("parts") is None or isinstance(body.get("uploadId"), str)


def _document() -> dict[str, Any]:
    """The document the stack above serves (its settings decide the limits in it)."""
    settings = GatewaySettings(
        _env_file=None,
        dropfile_env="development",
        service_token="t" * 32,
        **LIMITS,  # type: ignore[arg-type]
    )
    return create_app(settings).openapi()


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT).exclude(path="/api/v2/events")
for _rule in (_keep_password_within_bcrypt, _keep_part_range, _keep_parts_with_upload_id):
    schema.hook("filter_body")(_rule)
schema.hook("map_body")(_fresh_file_id)


@schema.auth(refresh_interval=None)
class SignedUpUser:
    """The `access_token` cookie the document's security scheme names: schemathesis also
    sends each request without it, and with a made-up one, and expects 401."""

    def get(self, case: Any, context: Any) -> str | None:
        return SESSION.get("access_token")  # None while tests are collected

    def set(self, case: Any, data: str | None, context: Any) -> None:
        if data:
            case.cookies = {**(case.cookies or {}), "access_token": data}


def test_the_stack_serves_the_document_under_test(documented_stack):
    served = httpx.get(f"{documented_stack}/openapi.json", timeout=30).json()
    assert served == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_keeps_to_its_document(case, documented_stack, signed_up):
    case.call_and_validate(base_url=documented_stack, timeout=60)
