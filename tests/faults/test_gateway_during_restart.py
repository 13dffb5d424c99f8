"""The measured failure, at the HTTP edge: several uploads recording their parts at once
through the gateway while PostgreSQL restarts. Every answer is 200 (the coordinator waited
the restart out) or 503 with Retry-After (it lasted longer): never 500; a client that
honours Retry-After completes every upload byte-exact."""

from __future__ import annotations

import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest

from tests.upload.helpers import PART, put_part

pytestmark = pytest.mark.slow

UPLOADS = 3
PARTS = 3


@dataclass
class HttpUpload:
    file_id: str
    data: bytes
    upload_id: str = ""
    urls: list[str] = field(default_factory=list)
    etags: list[str] = field(default_factory=list)


@dataclass
class Answers:
    """Every status the gateway answered, and whether each 503 said when to retry."""

    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, client: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response:
        """The call, repeated after Retry-After while it answers 503 (for up to 30 s)."""
        give_up = time.monotonic() + 30
        while True:
            response = client.request(method, path, **kwargs)
            with self.lock:
                self.statuses.append(response.status_code)
            if response.status_code != 503 or time.monotonic() > give_up:
                return response
            time.sleep(min(float(response.headers["Retry-After"]), 1.0))


def _start(client: httpx.Client, answers: Answers) -> HttpUpload:
    upload = HttpUpload(str(uuid.uuid4()), os.urandom(PARTS * PART))
    reply = answers.call(
        client,
        "POST",
        "/api/files/get-upload-urls",
        json={
            "file_id": upload.file_id,
            "file_name": "big.bin",
            "file_type": "",
            "file_size": str(len(upload.data)),
        },
    )
    assert reply.status_code == 200, reply.text
    upload.upload_id, upload.urls = reply.json()["uploadId"], reply.json()["presignedUrls"]
    upload.etags = [
        put_part(url, upload.data[i * PART : (i + 1) * PART]) for i, url in enumerate(upload.urls)
    ]
    return upload


def _record(client, answers, upload: HttpUpload, index: int) -> int:
    return answers.call(
        client,
        "POST",
        "/api/files/record-chunk",
        json={
            "file_id": upload.file_id,
            "chunk_index": index,
            "size": str(PART),
            "etag": upload.etags[index].strip('"'),
        },
    ).status_code


def _complete(client, answers, upload: HttpUpload) -> int:
    return answers.call(
        client,
        "POST",
        "/api/files/complete-upload",
        json={
            "uploadId": upload.upload_id,
            "fileId": upload.file_id,
            "parts": [{"ETag": etag, "PartNumber": i + 1} for i, etag in enumerate(upload.etags)],
        },
    ).status_code


@pytest.mark.parametrize(
    "retry_seconds,down_seconds", [(5.0, 1.0), (0.3, 1.5)], ids=["waited-out", "answered-503"]
)
def test_concurrent_uploads_survive_a_database_restart(
    coordinator,
    gateway_in_front,
    own_postgres,
    make_token,
    s3,
    fault_bucket,
    retry_seconds,
    down_seconds,
):
    upload_service = coordinator(database_retry_seconds=retry_seconds)
    url = gateway_in_front(upload_service.running.port)
    answers = Answers()
    user_id = str(uuid.uuid4())
    with httpx.Client(
        base_url=url, timeout=60, cookies={"access_token": make_token(user_id=user_id)}
    ) as client:
        uploads = [_start(client, answers) for _ in range(UPLOADS)]
        for upload in uploads:  # the pools hold connections the restart will kill
            assert _record(client, answers, upload, 0) == 200

        own_postgres.stop("immediate")
        restart = threading.Timer(down_seconds, own_postgres.start)
        restart.start()
        with ThreadPoolExecutor(UPLOADS * (PARTS - 1)) as pool:
            recorded = list(
                pool.map(
                    lambda job: _record(client, answers, *job),
                    [(u, i) for u in uploads for i in range(1, PARTS)],
                )
            )
        restart.join()
        completed = [_complete(client, answers, upload) for upload in uploads]

    assert recorded == [200] * len(recorded)
    assert completed == [200] * UPLOADS
    assert set(answers.statuses) <= {200, 503}, answers.statuses
    if retry_seconds < down_seconds:
        assert 503 in answers.statuses  # the outage outlasted the retries
    for upload in uploads:
        stored = s3.get_object(Bucket=fault_bucket, Key=f"users/{user_id}/{upload.file_id}")
        assert stored["Body"].read() == upload.data
