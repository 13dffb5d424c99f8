"""A property-based test of the API against its own OpenAPI document (schemathesis, every
check it has): requests generated from the document, valid and invalid, are sent to the real
gateway in front of the real services (S3 on moto) as a signed-up user; no answer may be a
5xx, break its documented schema (status, content type, body, headers), refuse a request the
document allows, or accept one it does not.

The stack here runs as the document says of it: the upload service's file size limits are
the gateway's (which the document states), share links may live as long as the document
allows (ten years: a deployment's own maximum is its setting, 30 days by default), no
per-user quota or sign-in delay (a user's quota is state the document cannot know; 413
would be right, but not for every request), and single sign-on configured (at a local
issuer, tests/fixtures/oidc.py), so that its login redirects. Every request comes from an
address of its own (X-Forwarded-For, one trusted proxy), and share link guesses are
allowed by the thousand: the hundreds of unknown tokens sent here are answered the 404
page, and slow down no other test's 127.0.0.1.
Three rules relate fields to each other, which JSON Schema cannot say and the fields'
descriptions do: a password of at most 72 bytes in UTF-8 (sign-up's and a share link's:
they say 72 characters), part-urls' last_part not before first_part and at most 1,000
after it, and v2 completion's `parts` only with `uploadId`. Generated bodies are kept to
those rules (hooks below). A page token is one the server made (its description says
so): a generated one that has a token's shape becomes one made for the request's name
filter (services/upload/listing.py's own encoding), so that pages past the first are
listed too.
Single sign-on's callback is the issuer sending back the browser that started a sign-in:
any other request, however well formed, is refused 400 (OIDC_FLOW_UNKNOWN) with a page,
as the document says; only for that operation is 400 an answer to valid data too (no
schema can tell a state this server handed out from another).
Uploads created here get ids of their own (uuid4, below), so that the ids generated for the
other operations name files that do not exist (404), not files whose layout a request
would have to match: per-operation testing cannot know that layout (its part count and
sizes), which tests/gateway/test_v2_uploads.py and test_error_codes.py cover.
`GET /api/v2/events` streams for minutes; tests/gateway/test_live_events.py covers it.

The budget (examples per operation) keeps the run to a minute or two."""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from gateway.app import create_app
from gateway.routes.v2_listing import PAGE_TOKEN_PATTERN
from gateway.schemas import UUID_PATTERN
from gateway.schemas_share import MAX_EXPIRY_SECONDS
from gateway.settings import GatewaySettings
from services.upload.listing import encode_page_token
from services.upload.server import create_server
from services.upload.settings import UploadSettings
from services.upload.store.listing import Position
from tests.conftest import settings_for
from tests.fixtures.gateway import serve_gateway
from tests.fixtures.oidc import CALLBACK_PATH

from .conftest import sign_up

EXAMPLES_PER_OPERATION = 80
MIB = 1024 * 1024
LIMITS = {"max_file_size_bytes": 64 * MIB, "v2_max_file_size_bytes": 2 * 1024 * MIB}


CREATING = {"/api/files/get-upload-urls": "file_id", "/api/v2/files": "fileId"}
# Where this test's requests come from (TEST-NET-2), through the one proxy trusted.
CLIENT_ADDRESS = f"198.51.100.{random.randrange(1, 255)}"
GUESSES = {
    "share_guess_free_failures": 10_000,
    "share_password_free_failures": 10_000,
    "share_link_password_free_failures": 100_000,
}


def _fresh_file_id(context: Any, body: Any) -> Any:
    """A valid generated id becomes a fresh one (an invalid one, of a negative case, stays)."""
    field = CREATING.get(context.operation.path)
    if field and isinstance(body, dict) and re.fullmatch(UUID_PATTERN, str(body.get(field))):
        return {**body, field: str(uuid.uuid4())}
    return body


def _made_page_token(context: Any, query: Any) -> Any:
    """A generated page token of a token's shape becomes one the server made for this name
    filter (a position among the caller's files; an invalid token, of a negative case,
    stays)."""
    if context.operation.path != "/api/v2/files" or not isinstance(query, dict):
        return query
    token, name = query.get("pageToken"), query.get("name", "")
    if not isinstance(token, str) or not token or not re.fullmatch(PAGE_TOKEN_PATTERN, token):
        return query
    if not isinstance(name, str):
        return query
    seed = hashlib.sha256(token.encode()).digest()
    position = Position(
        created_us=int.from_bytes(seed[:6]) % 2**52, file_id=uuid.UUID(bytes=seed[:16])
    )
    return {**query, "pageToken": encode_page_token(position, name)}


@pytest.fixture(scope="module")
def documented_stack(
    common_settings, oidc_auth_address, oidc_provider, events_address
) -> Iterator[str]:
    upload = create_server(
        settings_for(
            UploadSettings,
            common_settings,
            user_quota_bytes=0,
            share_link_max_ttl_seconds=MAX_EXPIRY_SECONDS,
            **GUESSES,
            **LIMITS,
        ),
        port=0,
    )
    upload.start()
    try:
        gateway = settings_for(
            GatewaySettings,
            common_settings,
            auth_service_addr=oidc_auth_address,
            upload_service_addr=f"127.0.0.1:{upload.port}",
            events_service_addr=events_address,
            throttled_answer_delay_seconds=0,
            trusted_proxy_hops=1,
            **LIMITS,
        )
        with serve_gateway(gateway) as url:
            oidc_provider.redirect_uris.add(url + CALLBACK_PATH)
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
    if not isinstance(body, dict):
        return True
    if context.operation.path == "/api/auth/signup":
        user = body.get("user")
        password = user.get("password") if isinstance(user, dict) else None
    elif context.operation.path == "/api/v2/files/{file_id}/links":
        password = body.get("password")
    else:
        return True
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


def _keep_single_put_consistent(context: Any, body: Any) -> bool:
    """A single PUT's rules across fields: at most 5 MiB, a partChecksum only with
    singlePut, and of the checksumAlgorithm's length (base64 of 32 or 4 bytes)."""
    if context.operation.path != "/api/v2/files" or not isinstance(body, dict):
        return True
    single, checksum, size = body.get("singlePut"), body.get("partChecksum"), body.get("size")
    if single is True and isinstance(size, int | float) and size > 5 * MIB:
        return False
    if not isinstance(checksum, str):
        return True
    length = 8 if body.get("checksumAlgorithm") == "CRC32C" else 44
    return single is True and len(checksum) == length


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
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                # The callback of a sign-in this browser did not start (see above).
                "include-operation-id": "finishOidcSignIn",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "3xx", "400", "401", "403", "404", "409"]
                        + ["429", "5xx"]
                    }
                },
            }
        ]
    }
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG).exclude(path="/api/v2/events")
for _rule in (
    _keep_password_within_bcrypt,
    _keep_part_range,
    _keep_parts_with_upload_id,
    _keep_single_put_consistent,
):
    schema.hook("filter_body")(_rule)
schema.hook("map_body")(_fresh_file_id)
schema.hook("map_query")(_made_page_token)


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
    case.call_and_validate(
        base_url=documented_stack, headers={"X-Forwarded-For": CLIENT_ADDRESS}, timeout=60
    )
