"""The API document is enough to build a client from: openapi-python-client generates one
from the document the gateway serves (into a temporary folder: generated code is never
committed), and that client alone signs up, uploads a file through the v2 API (part URLs
signed for each part's checksum, parts recorded in a batch, completion), waits for storage
to confirm it and downloads it byte for byte, against the real services."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import wait_until

from .conftest import PASSWORD, unique_email

PACKAGE = "dropfile_api"


@pytest.fixture(scope="module")
def generated(gateway_url, tmp_path_factory) -> Iterator[Any]:
    """`generated("api.v2.create_upload")`: a module of the client made from the served
    document."""
    folder = tmp_path_factory.mktemp("generated-client")
    document = folder / "openapi.json"
    document.write_text(json.dumps(httpx.get(f"{gateway_url}/openapi.json", timeout=30).json()))
    config = folder / "config.json"
    # No post hooks: the generator would run ruff over its output.
    config.write_text(json.dumps({"post_hooks": [], "package_name_override": PACKAGE}))
    generator = Path(sys.executable).parent / "openapi-python-client"
    result = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            str(document),
            "--config",
            str(config),
            "--meta",
            "none",
            "--output-path",
            str(folder / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Anything it could not turn into code is a gap in the document.
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(folder))
    try:

        def module(name: str) -> ModuleType:
            return importlib.import_module(f"{PACKAGE}.{name}")

        yield module
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def test_a_generated_client_uploads_and_downloads_a_file(generated, gateway_url):
    client_module = generated("client")
    models = generated("models")
    client = client_module.Client(
        base_url=gateway_url, raise_on_unexpected_status=True, timeout=httpx.Timeout(60)
    )
    signed_up = generated("api.auth.sign_up").sync_detailed(
        client=client,
        body=models.SignUpBody(
            user=models.SignUpUser(email=unique_email(), name="Ada", password=PASSWORD)
        ),
    )
    assert signed_up.status_code == 200, signed_up.content
    # The session's cookies stay in the client's cookie jar, as a browser keeps them.

    data = os.urandom(5 * 1024 * 1024 + 4321)  # two parts
    created = generated("api.v2.create_upload").sync(
        client=client,
        body=models.CreateUploadBody(
            file_name="generated.bin",
            size=len(data),
            mime_type="application/octet-stream",
            checksum_algorithm=models.CreateUploadBodyChecksumalgorithm.SHA256,
        ),
    )
    assert isinstance(created, models.CreateUploadReply), created
    file_id = created.file_id  # a UUID: the document says its format
    parts = [
        data[start : start + created.part_size] for start in range(0, len(data), created.part_size)
    ]
    assert len(parts) == created.part_count == 2
    checksums = [base64.b64encode(hashlib.sha256(part).digest()).decode() for part in parts]
    urls = generated("api.v2.get_part_urls").sync(
        file_id=file_id,
        client=client,
        body=models.PartUrlsBody(first_part=1, last_part=len(parts), checksums=checksums),
    )
    assert isinstance(urls, models.PartUrlsReply), urls
    records = []
    for entry, part, checksum in zip(urls.parts, parts, checksums):
        stored = httpx.put(
            entry.url, content=part, headers=entry.headers.additional_properties, timeout=60
        )
        assert stored.status_code == 200, stored.text
        records.append(
            models.RecordPartBody(
                part_number=entry.part_number,
                size=len(part),
                etag=stored.headers["ETag"],
                checksum=checksum,
            )
        )
    recorded = generated("api.v2.record_parts").sync(
        file_id=file_id, client=client, body=models.RecordPartsBody(parts=records)
    )
    assert isinstance(recorded, models.RecordPartsReply) and recorded.part_numbers == [1, 2]
    sha256 = hashlib.sha256(data).hexdigest()
    completed = generated("api.v2.complete_upload_v2").sync(
        file_id=file_id,
        client=client,
        body=models.CompleteBody(upload_id=created.upload_id, sha256=sha256),
    )
    assert isinstance(completed, models.CompleteReply), completed

    get_file = generated("api.v2.get_file")

    def uploaded() -> Any:
        reply = get_file.sync(file_id=file_id, client=client)
        return reply if reply.file.status == models.FileV2Status.UPLOADED else None

    file = wait_until(uploaded, timeout=30, interval=0.2, what="the upload to be confirmed").file
    assert file.sha256 == sha256 and file.size == len(data)
    download = generated("api.files.get_download_url").sync(
        client=client, body=models.DownloadUrlBody(s3_key=file.s_3_key)
    )
    assert isinstance(download, models.DownloadUrlReply), download
    assert httpx.get(download.url, timeout=60).content == data

    # Refusals come back typed, with the code to branch on.
    missing = get_file.sync(file_id=uuid.uuid4(), client=client)
    assert isinstance(missing, models.ErrorReply) and missing.code == "NOT_FOUND"
