"""End to end, exactly as the browser client does it, over HTTP through the gateway: sign
up; slice a file into 5 MiB parts; PUT them to presigned URLs three at a time; record each
part; complete; wait for storage's ObjectCreated event (moto's S3 -> SQS -> the event
processor) to confirm the upload; list; download; delete.

Storage events arrive late in real life; here the queue delays them a few seconds, so the
test can see that completing an upload does not by itself mark it UPLOADED."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from urllib.parse import quote

import httpx
import pytest
from botocore.exceptions import ClientError
from sqlalchemy import text

from dropfile.events.v1 import events_pb2
from tests.conftest import wait_until

pytestmark = pytest.mark.e2e

PART_SIZE = 5 * 1024 * 1024  # the browser client's slice size
ORIGIN = "http://localhost:5173"  # the client's dev server: a cross-origin caller
EVENT_DELAY_SECONDS = 4
FILE_NAME = "Résumé 2024.pdf"


@contextmanager
def delayed_storage_events(sqs, queue_url: str, seconds: int):
    """Storage notifications reach the processor `seconds` late while the block runs."""
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"DelaySeconds": str(seconds)})
    try:
        yield
    finally:
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"DelaySeconds": "0"})


def browser(gateway_url: str) -> httpx.Client:
    """A browser tab on another origin: sends its cookies (credentials: "include")."""
    return httpx.Client(base_url=gateway_url, timeout=60, headers={"Origin": ORIGIN})


def api_ok(response: httpx.Response) -> dict:
    """What the client checks: response.ok, and CORS lets it read the reply."""
    assert response.is_success, f"{response.request.url}: {response.status_code} {response.text}"
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    return response.json()


def put_part(url: str, part: bytes) -> str:
    response = httpx.put(
        url,
        content=part,
        timeout=120,
        headers={"Content-Type": "application/octet-stream", "Origin": ORIGIN},
    )
    assert response.status_code == 200, response.text
    # The bucket's CORS rule lets the page's script read the ETag.
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "etag" in response.headers["access-control-expose-headers"].lower()
    return response.headers["ETag"]


def status_of(client: httpx.Client, file_id: str) -> str | None:
    files = api_ok(client.get("/api/files/list"))["files"]
    return next((f["status"] for f in files if f["fileId"] == file_id), None)


def test_browser_client_flow(
    gateway_url, events_server, events_stub, make_token, storage, sqs, s3, db_engine
):
    client = browser(gateway_url)
    signup = client.post(
        "/api/auth/signup",
        json={
            "user": {
                "email": f"e2e-{uuid.uuid4().hex[:10]}@example.com",
                "name": "Ada",
                "password": "correct horse battery",
            }
        },
    )
    assert api_ok(signup)["status"]
    assert {"access_token", "refresh_token", "device_id"} <= set(client.cookies.keys())
    assert api_ok(client.get("/api/auth/authenticate")) == {"status": "Authorized"}

    data = os.urandom(3 * PART_SIZE + 123_457)
    parts = [data[start : start + PART_SIZE] for start in range(0, len(data), PART_SIZE)]
    assert [len(p) for p in parts] == [PART_SIZE] * 3 + [123_457]
    file_id = str(uuid.uuid4())
    started = api_ok(
        client.post(
            "/api/files/get-upload-urls",
            json={
                "file_id": file_id,
                "file_name": FILE_NAME,
                "file_type": "application/pdf",
                "file_size": str(len(data)),
            },
        )
    )
    assert started["success"] is True
    urls, upload_id = started["presignedUrls"], started["uploadId"]
    assert len(urls) == len(parts)

    with ThreadPoolExecutor(max_workers=3) as pool:  # three parts in flight at a time
        etags = list(pool.map(put_part, urls, parts))
    for index, (part, etag) in enumerate(zip(parts, etags)):
        recorded = api_ok(
            client.post(
                "/api/files/record-chunk",
                json={
                    "file_id": file_id,
                    "chunk_index": index,
                    "size": str(len(part)),
                    "etag": etag.strip('"'),
                },
            )
        )
        assert recorded == {"success": True}

    stats_metadata = [("authorization", f"Bearer {make_token()}")]
    confirmed_before = events_stub.GetStats(
        events_pb2.GetStatsRequest(), metadata=stats_metadata
    ).uploads_confirmed
    with delayed_storage_events(sqs, storage["queue_url"], EVENT_DELAY_SECONDS):
        completed = api_ok(
            client.post(
                "/api/files/complete-upload",
                json={
                    "uploadId": upload_id,
                    "fileId": file_id,
                    "parts": [
                        {"ETag": etag, "PartNumber": number}
                        for number, etag in enumerate(etags, start=1)
                    ],
                },
            )
        )
        assert completed["success"] is True
        # Completion alone must not mark it: only storage's event does.
        assert status_of(client, file_id) == "UPLOADING"
        wait_until(
            lambda: status_of(client, file_id) == "UPLOADED",
            timeout=60,
            interval=0.25,
            what="the ObjectCreated event to confirm the upload",
        )
    stats = events_stub.GetStats(events_pb2.GetStatsRequest(), metadata=stats_metadata)
    assert stats.uploads_confirmed > confirmed_before  # the event processor confirmed it

    files = api_ok(client.get("/api/files/list"))
    entry = next(f for f in files["files"] if f["fileId"] == file_id)
    assert entry["fileName"] == FILE_NAME
    assert entry["mimeType"] == "application/pdf"
    assert entry["size"] == len(data)
    assert entry["status"] == "UPLOADED"
    assert entry["createdAt"].endswith("Z")

    download = api_ok(client.post("/api/files/get-download-url", json={"s3_key": entry["s3Key"]}))
    fetched = httpx.get(download["url"], timeout=120)
    assert fetched.status_code == 200
    assert fetched.content == data
    disposition = fetched.headers["Content-Disposition"]
    assert disposition.startswith("attachment")
    assert quote(FILE_NAME, safe="") in disposition  # filename*=UTF-8''...

    deleted = api_ok(client.request("DELETE", "/api/files/delete", json={"file_id": file_id}))
    assert deleted["success"] is True
    assert status_of(client, file_id) is None
    with pytest.raises(ClientError) as gone:
        s3.head_object(Bucket=storage["bucket"], Key=entry["s3Key"])
    assert gone.value.response["Error"]["Code"] in ("404", "NoSuchKey")
    with db_engine.connect() as conn:
        rows = conn.execute(
            text("select count(*) from files where id = :id"), {"id": file_id}
        ).scalar_one()
        chunks = conn.execute(
            text("select count(*) from chunks where file_id = :id"), {"id": file_id}
        ).scalar_one()
    assert (rows, chunks) == (0, 0)

    assert api_ok(client.get("/api/auth/signout"))["status"]
    assert client.get("/api/files/list").status_code == 401
