"""`POST /api/v2/files/{file_id}/part-urls` over real HTTP against the real upload service:
fresh presigned PUT URLs for an upload in progress, with v1's error mapping."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from .conftest import PART_SIZE, listed, put_part, start_upload, wait_until_uploaded


def part_urls(client: httpx.Client, file_id: str, body) -> httpx.Response:
    return client.post(f"/api/v2/files/{file_id}/part-urls", json=body)


@pytest.mark.slow
def test_fresh_urls_finish_an_upload(signed_in, upload_settings):
    client = signed_in()
    data = bytes(range(256)) * (PART_SIZE // 256) + b"the short last part"
    file_id, started = start_upload(
        client, data, name="fresh.bin", file_type="application/octet-stream"
    )

    response = part_urls(client, file_id, {"first_part": 1, "last_part": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"parts", "expiresIn"}
    assert body["expiresIn"] == upload_settings.presigned_url_ttl_seconds
    assert [part["partNumber"] for part in body["parts"]] == [1, 2]
    for part in body["parts"]:
        query = parse_qs(urlparse(part["url"]).query)
        assert query["partNumber"] == [str(part["partNumber"])]
        assert query["uploadId"] == [started["uploadId"]]

    pieces = [data[:PART_SIZE], data[PART_SIZE:]]
    parts = []
    for index, (part, piece) in enumerate(zip(body["parts"], pieces)):
        etag = put_part(part["url"], piece)
        recorded = client.post(
            "/api/files/record-chunk",
            json={
                "file_id": file_id,
                "chunk_index": index,
                "size": str(len(piece)),
                "etag": etag.strip('"'),
            },
        )
        assert recorded.status_code == 200, recorded.text
        parts.append({"ETag": etag, "PartNumber": index + 1})
    completed = client.post(
        "/api/files/complete-upload",
        json={"uploadId": started["uploadId"], "fileId": file_id, "parts": parts},
    )
    assert completed.status_code == 200, completed.text

    entry = wait_until_uploaded(client, file_id)
    url = client.post("/api/files/get-download-url", json={"s3_key": entry["s3Key"]})
    assert httpx.get(url.json()["url"], timeout=60).content == data

    # A completed upload takes no more parts.
    late = part_urls(client, file_id, {"first_part": 1, "last_part": 1})
    assert late.status_code == 409
    assert late.json()["error"]
    assert late.json()["code"] == "UPLOAD_COMPLETE"


def test_the_access_token_cookie_is_required(api_client):
    response = part_urls(api_client(), str(uuid.uuid4()), {"first_part": 1, "last_part": 1})
    assert response.status_code == 401
    assert response.json()["code"] == "ACCESS_TOKEN_MISSING"
    assert set(response.json()) == {"error", "code"}


def test_another_users_file_and_an_unknown_file_are_404(signed_in):
    alice, bob = signed_in(), signed_in()
    file_id, _ = start_upload(alice, b"alice's bytes")
    for client, target in [(bob, file_id), (alice, str(uuid.uuid4()))]:
        response = part_urls(client, target, {"first_part": 1, "last_part": 1})
        assert response.status_code == 404
        assert response.json() == {"error": "file not found", "code": "NOT_FOUND"}
    assert listed(alice, file_id)["status"] == "UPLOADING"


@pytest.mark.parametrize(
    "body,message",
    [
        ({"first_part": 1}, "missing fields: last_part"),
        ({}, "missing fields: first_part, last_part"),
        ({"first_part": "1", "last_part": 1}, "first_part"),
        ({"first_part": 0, "last_part": 1}, "first_part"),
        ({"first_part": 1, "last_part": 1, "extra": True}, "unknown fields: extra"),
        ({"first_part": 2, "last_part": 1}, "last_part_number must not be less than first"),
        ({"first_part": 1, "last_part": 2}, "beyond this file's 1 parts"),
        ({"first_part": 1, "last_part": 1001}, "at most 1000 parts per call"),
    ],
)
def test_bad_bodies_are_400_naming_the_problem(signed_in, body, message):
    client = signed_in()
    file_id, _ = start_upload(client, b"one part")
    response = part_urls(client, file_id, body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_a_file_id_that_is_not_a_uuid_is_400(signed_in):
    response = part_urls(signed_in(), "not-a-uuid", {"first_part": 1, "last_part": 1})
    assert response.status_code == 400
    assert response.json() == {"error": "file_id must be a UUID", "code": "INVALID_REQUEST"}


def test_the_route_is_documented(api_client):
    schema = api_client().get("/openapi.json").json()
    operation = schema["paths"]["/api/v2/files/{file_id}/part-urls"]["post"]
    assert "422" not in operation["responses"]
    assert {"200", "400", "401", "404", "409"} <= set(operation["responses"])
