"""The SDK's part checksums against a store that verifies them: SeaweedFS (as in
tests/upload/test_integrity_seaweedfs.py), behind an upload coordinator and a gateway of
this module's own. Parts carry CRC32C by default and SHA-256 on request, storage refuses a
part whose bytes changed on the way (BadDigest) whichever the algorithm, and a resumed
upload keeps the algorithm it was created with. Every request goes through the fault
proxy, which logs the checksum header of each part PUT and can flip a bit of one."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest

from dropfile_client import DropfileClient, UploadFailed
from gateway.settings import GatewaySettings
from services.upload.settings import UploadSettings
from tests.conftest import settings_for, wait_until
from tests.fixtures.gateway import serve_gateway
from tests.fixtures.stores import S3Store, aws_credentials
from tests.upload.helpers import running_upload_server

from .conftest import PART, PASSWORD, write_file

pytestmark = pytest.mark.slow

CRC32C_HEADER = "x-amz-checksum-crc32c"
SHA256_HEADER = "x-amz-checksum-sha256"
RECORD_PARTS = r"^/api/v2/files/[^/]+/parts/batch$"


@pytest.fixture(scope="session")
def seaweedfs_stack(
    common_settings,
    seaweedfs: S3Store,
    auth_address,  # noqa: F811
    events_server,
) -> Iterator[dict]:
    bucket = seaweedfs.bucket("sdk-checksums")
    settings = settings_for(
        UploadSettings,
        common_settings,
        s3_bucket=bucket,
        aws_endpoint_url=seaweedfs.endpoint,
        user_quota_bytes=0,
    )
    with (
        aws_credentials(seaweedfs.access_key, seaweedfs.secret_key),
        running_upload_server(settings) as upload,
    ):
        gateway = settings_for(
            GatewaySettings,
            common_settings,
            auth_service_addr=auth_address,
            upload_service_addr=f"127.0.0.1:{upload.port}",
            events_service_addr=f"127.0.0.1:{events_server.port}",
        )
        with serve_gateway(gateway) as url:
            yield {"url": url, "bucket": bucket, "s3": seaweedfs.client()}


@pytest.fixture
def client(seaweedfs_stack, config_dir, fault_proxy) -> Iterator[DropfileClient]:
    """Signed up on the SeaweedFS stack; its requests go through the fault proxy."""
    with DropfileClient(seaweedfs_stack["url"], session_file=config_dir / "session.json") as client:
        client.signup(f"sums-{time.time_ns()}@example.com", PASSWORD, "Sums")
        yield client


def upload_state(seaweedfs_stack, client: DropfileClient, file_id: str) -> dict:
    """GET /api/v2/files/{id}/upload with the client's session, not through the proxy."""
    with httpx.Client(
        base_url=seaweedfs_stack["url"], trust_env=False, cookies=client._gateway.cookies
    ) as http:
        reply = http.get(f"/api/v2/files/{file_id}/upload")
    assert reply.status_code == 200, reply.text
    return reply.json()


def stored_bytes(seaweedfs_stack, client: DropfileClient, file_id: str) -> bytes:
    user_id = jwt.decode(
        client._gateway.cookies["access_token"], options={"verify_signature": False}
    )["sub"]
    return (
        seaweedfs_stack["s3"]
        .get_object(Bucket=seaweedfs_stack["bucket"], Key=f"users/{user_id}/{file_id}")["Body"]
        .read()
    )


def test_parts_carry_crc32c_by_default_and_sha256_on_request(
    seaweedfs_stack, client, fault_proxy, tmp_path
):
    source = tmp_path / "two-ways.bin"
    data = write_file(source, 2 * PART + 4321)

    by_default = client.upload(source, wait=False)
    puts = fault_proxy.puts()
    assert sorted(p.part_number for p in puts) == [1, 2, 3]
    assert {(p.status, p.checksum_header) for p in puts} == {(200, CRC32C_HEADER)}
    assert (
        upload_state(seaweedfs_stack, client, by_default.file_id)["checksumAlgorithm"] == "CRC32C"
    )
    assert by_default.sha256 == hashlib.sha256(data).hexdigest()
    assert stored_bytes(seaweedfs_stack, client, by_default.file_id) == data

    mark = len(fault_proxy.seen)
    chosen = client.upload(source, wait=False, checksum_algorithm="sha256")
    puts = [s for s in fault_proxy.seen[mark:] if s.method == "PUT"]
    assert {(p.status, p.checksum_header) for p in puts} == {(200, SHA256_HEADER)}
    assert upload_state(seaweedfs_stack, client, chosen.file_id)["checksumAlgorithm"] == "SHA256"
    assert chosen.sha256 == by_default.sha256
    assert stored_bytes(seaweedfs_stack, client, chosen.file_id) == data

    with pytest.raises(ValueError, match="unknown part checksum 'md5'"):
        client.upload(source, checksum_algorithm="md5")


@pytest.mark.parametrize("algorithm", ["CRC32C", "SHA256"])
def test_a_part_corrupted_on_the_way_is_refused_by_storage(
    seaweedfs_stack, client, fault_proxy, tmp_path, algorithm
):
    source = tmp_path / "fragile.bin"
    write_file(source, 2 * PART + 99)
    fault_proxy.corrupt_part(2)

    with pytest.raises(UploadFailed) as failed:
        client.upload(source, wait=False, checksum_algorithm=algorithm)

    message = failed.value.message
    assert "storage refused part 2: 400 BadDigest" in message, message
    assert failed.value.aborted
    [refused] = fault_proxy.puts(2)
    assert (refused.status, refused.checksum_header) == (400, f"x-amz-checksum-{algorithm.lower()}")
    user_id = jwt.decode(
        client._gateway.cookies["access_token"], options={"verify_signature": False}
    )["sub"]
    assert (
        not seaweedfs_stack["s3"]
        .list_multipart_uploads(Bucket=seaweedfs_stack["bucket"], Prefix=f"users/{user_id}/")
        .get("Uploads")
    )


def test_a_resumed_upload_keeps_the_checksum_it_was_created_with(
    seaweedfs_stack, client, fault_proxy, config_dir, tmp_path, dropfile_bin
):
    source = tmp_path / "resumed.bin"
    data = write_file(source, 3 * PART + 777)  # four parts
    # The installed command, SHA-256 parts, one at a time: parts 1 and 2 are stored, part 3
    # keeps being refused (503, retried with backoff) until the process is killed.
    fault_proxy.fail_part(3, times=100, status=503)
    # Parts 1 and 2 are stored but never recorded: their records keep being refused (and
    # retried) until the kill. SeaweedFS does not report checksums (ListParts), so the
    # resumed upload must record them with theirs for completion to name them.
    fault_proxy.fail_calls("POST", RECORD_PARTS)
    env = {
        **os.environ,
        "DROPFILE_CONFIG_DIR": str(config_dir),
        "DROPFILE_URL": seaweedfs_stack["url"],
        **fault_proxy.env(),
    }
    process = subprocess.Popen(
        [
            str(dropfile_bin),
            "upload",
            str(source),
            "--checksum",
            "sha256",
            "--parallel",
            "1",
            "--no-wait",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: fault_proxy.puts(3) or process.poll() is not None,
            timeout=120,
            what="part 3 to be sent",
        )
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGKILL)  # no chance to abort
    finally:
        process.communicate(timeout=60)
    first_run = fault_proxy.puts()
    assert [(p.part_number, p.status) for p in first_run if not p.injected] == [(1, 200), (2, 200)]
    assert {p.checksum_header for p in first_run} == {SHA256_HEADER}
    [file_id] = [
        entry["fileId"] for entry in json.loads((config_dir / "uploads.json").read_text()).values()
    ]

    assert not [c for c in fault_proxy.calls("POST", RECORD_PARTS) if not c.injected]
    # Resumed by the SDK, whose default is CRC32C: the upload stays SHA-256.
    fault_proxy.fail_part(3, times=0)
    fault_proxy.allow_calls("POST", RECORD_PARTS)
    mark = len(fault_proxy.seen)
    info = client.upload(source, wait=False)
    assert info.file_id == file_id
    resumed = [s for s in fault_proxy.seen[mark:] if s.method == "PUT"]
    assert sorted(p.part_number for p in resumed) == [3, 4]  # 1 and 2 were stored already
    assert {(p.status, p.checksum_header) for p in resumed} == {(200, SHA256_HEADER)}
    assert upload_state(seaweedfs_stack, client, file_id)["checksumAlgorithm"] == "SHA256"
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert stored_bytes(seaweedfs_stack, client, file_id) == data
