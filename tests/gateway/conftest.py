"""Helpers of the gateway tests: users signed up over HTTP, and cookie inspection."""

from __future__ import annotations

import uuid
from http.cookies import SimpleCookie

import httpx
import pytest

PASSWORD = "correct horse battery"


def unique_email() -> str:
    return f"gw-{uuid.uuid4().hex[:12]}@example.com"


def set_cookies(response: httpx.Response) -> dict[str, dict]:
    """The response's Set-Cookie headers: name -> {"value", and lower-cased attributes}."""
    found: dict[str, dict] = {}
    for header in response.headers.get_list("set-cookie"):
        jar = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            attributes = {key: value for key, value in morsel.items() if value}
            lowered = header.lower()
            attributes["httponly"] = "; httponly" in lowered
            attributes["secure"] = "; secure" in lowered
            found[name] = {"value": morsel.value, "raw": header, **attributes}
    return found


def sign_up(client: httpx.Client, email: str | None = None, **extra) -> httpx.Response:
    body = {"user": {"email": email or unique_email(), "name": "Grace", "password": PASSWORD}}
    body.update(extra)
    return client.post("/api/auth/signup", json=body)


@pytest.fixture
def signed_in(api_client):
    """Makes a client with a freshly signed-up user's cookies."""

    def make() -> httpx.Client:
        client = api_client()
        response = sign_up(client)
        assert response.status_code == 200, response.text
        return client

    return make


PART_SIZE = 5 * 1024 * 1024


def start_upload(
    client: httpx.Client, data: bytes, name: str = "notes.txt", file_type: str = "text/plain"
) -> tuple[str, dict]:
    """get-upload-urls for `data`; returns (file_id, the reply)."""
    file_id = str(uuid.uuid4())
    response = client.post(
        "/api/files/get-upload-urls",
        json={
            "file_id": file_id,
            "file_name": name,
            "file_type": file_type,
            "file_size": str(len(data)),
        },
    )
    assert response.status_code == 200, response.text
    return file_id, response.json()


def put_part(url: str, part: bytes) -> str:
    """PUTs one part to its presigned URL as a browser does; returns the ETag header."""
    response = httpx.put(
        url, content=part, timeout=60, headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status_code == 200, response.text
    return response.headers["ETag"]


def upload_file(
    client: httpx.Client, data: bytes, name: str = "notes.txt", file_type: str = "text/plain"
) -> tuple[str, str]:
    """The browser client's whole upload: URLs, parts, record-chunk, complete.
    Returns (file_id, upload_id)."""
    file_id, started = start_upload(client, data, name, file_type)
    parts = []
    for index, url in enumerate(started["presignedUrls"]):
        part = data[index * PART_SIZE : (index + 1) * PART_SIZE]
        etag = put_part(url, part)
        recorded = client.post(
            "/api/files/record-chunk",
            json={
                "file_id": file_id,
                "chunk_index": index,
                "size": str(len(part)),
                "etag": etag.strip('"'),
            },
        )
        assert recorded.status_code == 200, recorded.text
        assert recorded.json() == {"success": True}
        parts.append({"ETag": etag, "PartNumber": index + 1})
    completed = client.post(
        "/api/files/complete-upload",
        json={"uploadId": started["uploadId"], "fileId": file_id, "parts": parts},
    )
    assert completed.status_code == 200, completed.text
    assert completed.json()["success"] is True
    return file_id, started["uploadId"]


def listed(client: httpx.Client, file_id: str) -> dict | None:
    response = client.get("/api/files/list")
    assert response.status_code == 200, response.text
    return next((f for f in response.json()["files"] if f["fileId"] == file_id), None)


def wait_until_uploaded(client: httpx.Client, file_id: str) -> dict:
    """The storage event (through SQS and the event processor) confirms the upload."""
    from tests.conftest import wait_until

    return wait_until(
        lambda: (entry := listed(client, file_id)) and entry["status"] == "UPLOADED" and entry,
        timeout=30,
        interval=0.2,
        what=f"file {file_id} to become UPLOADED",
    )
