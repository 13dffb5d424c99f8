"""The limit of uploads in progress per user (MAX_UPLOADS_IN_PROGRESS) as REST clients see
it: the initiation past it, v1 (get-upload-urls) or v2 (POST /api/v2/files), is a 429 with
Retry-After and an error naming the limit."""

from __future__ import annotations

import uuid

import httpx

from services.upload.quota import UPLOADS_LIMIT_RETRY_AFTER_SECONDS
from services.upload.settings import UploadSettings
from tests.conftest import settings_for
from tests.fixtures.gateway import serve_gateway
from tests.upload.helpers import running_upload_server

from .conftest import sign_up


def _v1(client: httpx.Client) -> httpx.Response:
    return client.post(
        "/api/files/get-upload-urls",
        json={
            "file_id": str(uuid.uuid4()),
            "file_name": "empty.txt",
            "file_type": "text/plain",
            "file_size": "0",
        },
    )


def _v2(client: httpx.Client) -> httpx.Response:
    return client.post("/api/v2/files", json={"fileName": "empty.bin", "size": 0})


def test_an_initiation_past_the_limit_is_429_with_retry_after(common_settings, gateway_settings):
    settings = settings_for(UploadSettings, common_settings, max_uploads_in_progress=2)
    with (
        running_upload_server(settings) as upload,
        serve_gateway(
            gateway_settings.model_copy(update={"upload_service_addr": f"127.0.0.1:{upload.port}"})
        ) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        assert sign_up(client).status_code == 200
        assert _v1(client).status_code == 200
        assert _v2(client).status_code in (200, 201)
        for refused in (_v1(client), _v2(client)):
            assert refused.status_code == 429, refused.text
            assert refused.headers["Retry-After"] == str(UPLOADS_LIMIT_RETRY_AFTER_SECONDS)
            assert "too many uploads in progress" in refused.json()["error"]
