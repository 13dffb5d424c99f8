"""The /api/files routes over real HTTP against the real upload service, with moto's S3
for the parts and the event processor confirming uploads from moto's SQS events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from .conftest import PART_SIZE, listed, put_part, start_upload, upload_file, wait_until_uploaded

FILE_ROUTES = [
    ("POST", "/api/files/get-upload-urls"),
    ("POST", "/api/files/record-chunk"),
    ("POST", "/api/files/complete-upload"),
    ("POST", "/api/files/abort-upload"),
    ("POST", "/api/files/get-download-url"),
    ("GET", "/api/files/list"),
    ("DELETE", "/api/files/delete"),
]


@pytest.mark.parametrize("method,path", FILE_ROUTES)
def test_file_routes_need_the_access_token_cookie(api_client, method, path):
    response = api_client().request(method, path, json={"file_id": str(uuid.uuid4())})
    assert response.status_code == 401
    assert response.json()["success"] is False
    assert response.json()["error"]


def test_get_upload_urls_gives_one_url_per_5_mib_part(signed_in):
    client = signed_in()
    file_id = str(uuid.uuid4())
    response = client.post(
        "/api/files/get-upload-urls",
        json={
            "file_id": file_id,
            "file_name": "big.bin",
            "file_type": "",
            "file_size": str(2 * PART_SIZE + 1),
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert len(body["presignedUrls"]) == 3
    assert all(url.startswith("http") for url in body["presignedUrls"])
    assert [f"partNumber={n}" in url for n, url in enumerate(body["presignedUrls"], 1)] == [
        True
    ] * 3
    assert body["uploadId"]
    entry = listed(client, file_id)
    assert entry["status"] == "UPLOADING"
    assert entry["mimeType"] == "application/octet-stream"  # empty file_type
    assert entry["size"] == 2 * PART_SIZE + 1


def test_file_size_may_also_be_a_json_integer(signed_in):
    client = signed_in()
    response = client.post(
        "/api/files/get-upload-urls",
        json={
            "file_id": str(uuid.uuid4()),
            "file_name": "n.txt",
            "file_type": "text/plain",
            "file_size": 10,
        },
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["presignedUrls"]) == 1


def test_upload_list_download_and_delete_a_two_part_file(signed_in, s3, storage):
    client = signed_in()
    data = bytes(range(256)) * (PART_SIZE // 256) + b"tail of the file"
    file_id, _ = upload_file(client, data, name="report 2024.pdf", file_type="application/pdf")

    entry = wait_until_uploaded(client, file_id)
    assert entry["fileName"] == "report 2024.pdf"
    assert entry["mimeType"] == "application/pdf"
    assert entry["size"] == len(data) and isinstance(entry["size"], int)
    assert file_id in entry["s3Key"] and "report" not in entry["s3Key"]
    created = datetime.fromisoformat(entry["createdAt"].replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=5)

    download = client.post("/api/files/get-download-url", json={"s3_key": entry["s3Key"]})
    assert download.status_code == 200, download.text
    assert download.json()["success"] is True
    fetched = httpx.get(download.json()["url"], timeout=60)
    assert fetched.status_code == 200
    assert fetched.content == data

    deleted = client.request("DELETE", "/api/files/delete", json={"file_id": file_id})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["success"] is True and deleted.json()["message"]
    assert listed(client, file_id) is None
    with pytest.raises(Exception) as gone:
        s3.head_object(Bucket=storage["bucket"], Key=entry["s3Key"])
    assert "404" in str(gone.value)
    again = client.request("DELETE", "/api/files/delete", json={"file_id": file_id})
    assert again.status_code == 404
    assert again.json()["success"] is False


def test_list_is_newest_first(signed_in):
    client = signed_in()
    first, _ = start_upload(client, b"a")
    second, _ = start_upload(client, b"b")
    files = client.get("/api/files/list").json()["files"]
    assert [f["fileId"] for f in files] == [second, first]
    assert set(files[0]) == {
        "fileId",
        "fileName",
        "mimeType",
        "size",
        "s3Key",
        "status",
        "createdAt",
    }


def test_a_new_user_lists_no_files(signed_in):
    response = signed_in().get("/api/files/list")
    assert response.status_code == 200
    assert response.json() == {"success": True, "files": []}


def test_abort_marks_the_file_failed_and_is_idempotent(signed_in):
    client = signed_in()
    file_id, started = start_upload(client, b"x" * 100)
    body = {"uploadId": started["uploadId"], "file_id": file_id}
    first = client.post("/api/files/abort-upload", json=body)
    assert first.status_code == 200, first.text
    assert first.json()["success"] is True and first.json()["message"]
    again = client.post("/api/files/abort-upload", json=body)
    assert again.status_code == 200
    assert listed(client, file_id)["status"] == "FAILED"
    # An aborted upload takes no more parts.
    late = client.post(
        "/api/files/record-chunk",
        json={"file_id": file_id, "chunk_index": 0, "size": "100", "etag": "0" * 32},
    )
    assert late.status_code == 409
    assert late.json()["success"] is False


def test_download_before_the_upload_is_confirmed_is_refused(signed_in):
    client = signed_in()
    file_id, _ = start_upload(client, b"not yet")
    response = client.post(
        "/api/files/get-download-url", json={"s3_key": listed(client, file_id)["s3Key"]}
    )
    assert response.status_code == 409
    assert response.json()["success"] is False and response.json()["error"]


def test_completion_with_missing_or_unrecorded_parts_is_refused(signed_in):
    client = signed_in()
    data = b"y" * (PART_SIZE + 5)
    file_id, started = start_upload(client, data)
    etag = put_part(started["presignedUrls"][0], data[:PART_SIZE])
    body = {
        "uploadId": started["uploadId"],
        "fileId": file_id,
        "parts": [{"ETag": etag, "PartNumber": 1}],
    }
    missing = client.post("/api/files/complete-upload", json=body)
    assert missing.status_code == 400
    assert "missing" in missing.json()["error"]
    body["parts"].append({"ETag": '"' + "0" * 32 + '"', "PartNumber": 2})
    unrecorded = client.post("/api/files/complete-upload", json=body)
    assert unrecorded.status_code == 409
    assert unrecorded.json()["success"] is False


def test_out_of_range_part_index_and_wrong_part_size_are_400(signed_in):
    client = signed_in()
    file_id, _ = start_upload(client, b"z" * 10)
    for chunk_index, size in ((1, "10"), (5000, "10"), (0, "11"), (0, "0")):
        response = client.post(
            "/api/files/record-chunk",
            json={"file_id": file_id, "chunk_index": chunk_index, "size": size, "etag": "a" * 32},
        )
        assert response.status_code == 400, (chunk_index, size, response.text)
        assert response.json()["success"] is False and response.json()["error"]


def test_a_file_over_the_size_limit_is_refused(signed_in, upload_settings):
    response = signed_in().post(
        "/api/files/get-upload-urls",
        json={
            "file_id": str(uuid.uuid4()),
            "file_name": "huge.iso",
            "file_type": "",
            "file_size": str(upload_settings.max_file_size_bytes + 1),
        },
    )
    assert 400 <= response.status_code < 500
    assert response.json()["success"] is False
    assert "limit" in response.json()["error"]


def test_another_users_file_is_not_found_and_its_id_cannot_be_reused(signed_in):
    owner, intruder = signed_in(), signed_in()
    file_id, upload_id = upload_file(owner, b"private bytes")
    s3_key = wait_until_uploaded(owner, file_id)["s3Key"]
    pending_id, pending = start_upload(owner, b"q" * 20)

    attempts = [
        (
            "POST",
            "/api/files/record-chunk",
            {"file_id": pending_id, "chunk_index": 0, "size": "20", "etag": "a" * 32},
        ),
        (
            "POST",
            "/api/files/complete-upload",
            {
                "uploadId": pending["uploadId"],
                "fileId": pending_id,
                "parts": [{"ETag": "a" * 32, "PartNumber": 1}],
            },
        ),
        (
            "POST",
            "/api/files/abort-upload",
            {"uploadId": pending["uploadId"], "file_id": pending_id},
        ),
        ("POST", "/api/files/abort-upload", {"uploadId": upload_id, "file_id": file_id}),
        (
            "POST",
            "/api/files/complete-upload",
            {
                "uploadId": upload_id,
                "fileId": file_id,
                "parts": [{"ETag": "a" * 32, "PartNumber": 1}],
            },
        ),
        ("POST", "/api/files/get-download-url", {"s3_key": s3_key}),
        ("DELETE", "/api/files/delete", {"file_id": file_id}),
        ("DELETE", "/api/files/delete", {"file_id": pending_id}),
    ]
    for method, path, body in attempts:
        response = intruder.request(method, path, json=body)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["success"] is False
    assert intruder.get("/api/files/list").json()["files"] == []

    reused = intruder.post(
        "/api/files/get-upload-urls",
        json={"file_id": file_id, "file_name": "mine.txt", "file_type": "", "file_size": "5"},
    )
    assert reused.status_code == 409
    assert reused.json()["success"] is False

    # The owner's files are untouched.
    assert listed(owner, pending_id)["status"] == "UPLOADING"
    url = owner.post("/api/files/get-download-url", json={"s3_key": s3_key}).json()["url"]
    assert httpx.get(url, timeout=60).content == b"private bytes"
