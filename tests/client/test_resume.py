"""Resuming uploads with the installed `dropfile` command, and checksums end to end.

The long test runs a stack of its own: an upload coordinator on moto's S3 with a 1 KiB
minimum part (so a file of more than 1,000 parts is a megabyte) and on a Valkey of its own
(so FLUSHALL disturbs nobody), behind a gateway of its own; auth is the session's. The
command goes through the fault proxy, which sees every part PUT: a resumed upload must
never send a part storage already holds."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import jwt
import pytest
import redis

from dropfile.upload.v1 import upload_pb2
from dropfile_client import DropfileClient, StorageError
from gateway.settings import GatewaySettings
from services.common.clients import aws_client
from services.upload.settings import UploadSettings
from tests.conftest import settings_for, wait_until
from tests.fixtures.gateway import serve_gateway
from tests.fixtures.stores import SMALL_PART_MIN_SIZE, aws_credentials
from tests.upload.helpers import running_upload_server

from .conftest import PART, PASSWORD, run_dropfile, uploaded_file_id, write_file

pytestmark = pytest.mark.slow

UPLOAD_STATE = r"^/api/v2/files/[^/]+/upload$"


@pytest.fixture(scope="session")
def small_parts_stack(
    common_settings, small_parts_moto, private_valkey, auth_address, events_server
) -> Iterator[dict]:
    bucket = small_parts_moto.bucket("cli-resume")
    settings = settings_for(
        UploadSettings,
        common_settings,
        s3_bucket=bucket,
        aws_endpoint_url=small_parts_moto.endpoint,
        cloud_rd_uri=private_valkey,
        user_quota_bytes=0,
        min_part_size_bytes=SMALL_PART_MIN_SIZE,
    )
    with aws_credentials("testing", "testing"), running_upload_server(settings) as upload:
        gateway = settings_for(
            GatewaySettings,
            common_settings,
            auth_service_addr=auth_address,
            upload_service_addr=f"127.0.0.1:{upload.port}",
            events_service_addr=f"127.0.0.1:{events_server.port}",
        )
        with serve_gateway(gateway) as url:
            yield {"url": url, "upload": upload, "bucket": bucket, "redis": private_valkey}


def parts_put(proxy, since: int) -> list[int]:
    """Part numbers storage accepted, from the proxy's log entries after `since`."""
    return [
        seen.part_number
        for seen in proxy.seen[since:]
        if seen.method == "PUT" and seen.part_number is not None and seen.status == 200
    ]


def start_upload(dropfile_bin, source, env) -> subprocess.Popen:
    return subprocess.Popen(
        [str(dropfile_bin), "upload", str(source), "--parallel", "4", "--no-wait"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_once_stored(process: subprocess.Popen, proxy, count: int) -> None:
    """SIGKILL (no chance to abort) once storage accepted `count` part PUTs in all."""
    try:
        wait_until(
            lambda: len(parts_put(proxy, 0)) >= count or process.poll() is not None,
            timeout=120,
            what=f"{count} parts to be stored",
        )
        assert process.poll() is None, (
            "the upload ended before it could be killed",
            process.communicate(),
        )
        process.send_signal(signal.SIGKILL)
    finally:
        process.communicate(timeout=60)
    # A PUT the client was sending may still reach storage: it counts as this run's.
    wait_until(lambda: proxy.settled, timeout=60, what="in-flight PUTs to end")


def test_a_killed_upload_of_more_than_1000_parts_resumes_after_flushall_and_token_expiry(
    dropfile_bin, small_parts_stack, fault_proxy, config_dir, tmp_path, make_token, service_token
):
    env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    env.update(
        {
            "DROPFILE_CONFIG_DIR": str(config_dir),
            "DROPFILE_URL": small_parts_stack["url"],
            "PYTHONUNBUFFERED": "1",
            **fault_proxy.env(),
        }
    )
    email = f"resume-{time.time_ns()}@example.com"
    assert (
        run_dropfile(
            dropfile_bin,
            "signup",
            "--email",
            email,
            "--name",
            "Ada",
            "--password-stdin",
            stdin=PASSWORD + "\n",
            env=env,
        ).code
        == 0
    )
    source = tmp_path / "many-parts.bin"
    data = write_file(source, 1100 * 1024 + 77)  # 1,101 parts of 1 KiB

    # 1. Killed once 300 parts are stored.
    process = start_upload(dropfile_bin, source, env)
    kill_once_stored(process, fault_proxy, 300)
    run_1 = parts_put(fault_proxy, 0)
    assert 300 <= len(set(run_1)) < 1101
    assert json.loads((config_dir / "uploads.json").read_text())  # the resume record

    # 2. Redis loses every upload session; resumed, killed again at 700 parts stored.
    redis.Redis.from_url(small_parts_stack["redis"]).flushall()
    mark = len(fault_proxy.seen)
    process = start_upload(dropfile_bin, source, env)
    kill_once_stored(process, fault_proxy, 700)
    run_2 = parts_put(fault_proxy, mark)
    assert run_2 and not set(run_2) & set(run_1), "a stored part was sent again"

    # 3. The access token expired meanwhile: refreshed, resumed, completed.
    session = json.loads((config_dir / "session.json").read_text())
    claims = jwt.decode(session["cookies"]["access_token"], options={"verify_signature": False})
    now = int(time.time())
    session["cookies"]["access_token"] = make_token(
        user_id=claims["sub"], email=email, iat=now - 3600, exp=now - 60
    )
    (config_dir / "session.json").write_text(json.dumps(session))
    mark = len(fault_proxy.seen)
    done = run_dropfile(dropfile_bin, "upload", str(source), "--no-wait", env=env)
    file_id = uploaded_file_id(done)
    run_3 = parts_put(fault_proxy, mark)
    assert not set(run_3) & (set(run_1) | set(run_2)), "a stored part was sent again"
    assert set(run_1) | set(run_2) | set(run_3) == set(range(1, 1102))
    assert [c.status for c in fault_proxy.calls("GET", r"^/api/auth/refresh$")] == [200]
    # Runs 2 and 3 asked where the upload stood; run 3's token was refused, then refreshed.
    assert [c.status for c in fault_proxy.calls("GET", UPLOAD_STATE)] == [200, 401, 200]
    assert not json.loads((config_dir / "uploads.json").read_text())  # forgotten once done

    # Storage holds the exact bytes, and the whole file's SHA-256 is on record.
    upload = small_parts_stack["upload"]
    key = f"users/{claims['sub']}/{file_id}"
    with aws_credentials("testing", "testing"):
        s3 = aws_client("s3", region="us-east-1", endpoint_url=upload.settings.s3_endpoint)
    assert s3.get_object(Bucket=small_parts_stack["bucket"], Key=key)["Body"].read() == data
    upload.internal_stub.ConfirmUpload(  # this store sends no events: confirm as a reconciler
        upload_pb2.ConfirmUploadRequest(
            s3_key=key,
            size=len(data),
            etag=s3.head_object(Bucket=small_parts_stack["bucket"], Key=key)["ETag"],
        ),
        metadata=[("x-dropfile-service-token", service_token)],
    )
    listing = json.loads(run_dropfile(dropfile_bin, "ls", "--json", env=env).out)
    assert [(f["fileId"], f["status"]) for f in listing] == [(file_id, "UPLOADED")]
    target = tmp_path / "back.bin"
    assert run_dropfile(dropfile_bin, "get", file_id, str(target), env=env).code == 0
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.fixture
def client(gateway_url, events_server, tmp_path):
    with DropfileClient(gateway_url, session_file=tmp_path / "session.json") as client:
        client.signup(f"sum-{time.time_ns()}@example.com", PASSWORD, "Sums")
        yield client


def test_the_whole_file_checksum_is_recorded_and_a_corrupted_download_is_refused(
    client, tmp_path, s3, storage, cli, monkeypatch
):
    source = tmp_path / "precious.bin"
    data = write_file(source, PART + 123)
    info = client.upload(source)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert client.download(info.file_id, tmp_path / "ok.bin").read_bytes() == data

    # Storage hands back other bytes of the same size (bit rot, a wrong object).
    s3.put_object(Bucket=storage["bucket"], Key=info.s3_key, Body=bytes([data[0] ^ 1]) + data[1:])
    with pytest.raises(StorageError, match="download corrupted"):
        client.download(info.file_id, tmp_path / "bad.bin")
    assert not (tmp_path / "bad.bin").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".dropfile-part")] == []

    # The command says so in one line.
    monkeypatch.setenv("DROPFILE_CONFIG_DIR", str(tmp_path))
    cli("get", info.file_id, str(tmp_path / "cli.bin")).assert_one_line_error("download corrupted")


def test_an_upload_that_was_aborted_or_changed_starts_afresh(client, tmp_path):
    source = tmp_path / "changing.bin"
    write_file(source, 2000)
    first = client.upload(source, wait=False)
    records = tmp_path / "uploads.json"
    assert json.loads(records.read_text()) == {}  # completed: nothing to resume
    second = client.upload(source, wait=False)  # the same file again: a new upload
    assert second.file_id != first.file_id


def test_the_same_file_uploaded_twice_at_once_makes_two_uploads(gateway_url, tmp_path):
    """Two uploads of one unchanged file at once, sharing a resume record (one session
    folder, one process): neither resumes, and so joins, the other's upload in progress."""
    source = tmp_path / "twice.bin"
    data = write_file(source, 3 * PART + 17)
    email = f"twice-{time.time_ns()}@example.com"
    with DropfileClient(gateway_url, session_file=tmp_path / "first.json") as first:
        first.signup(email, PASSWORD, "Twice")
    results: list[object] = []

    def upload(index: int) -> None:
        with DropfileClient(gateway_url, session_file=tmp_path / f"s{index}.json") as client:
            client.login(email, PASSWORD)
            try:
                results.append(client.upload(source, name=f"twice-{index}.bin", parallel=2))
            except Exception as exc:  # recorded: the assertion below shows it
                results.append(exc)

    threads = [threading.Thread(target=upload, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert all(not isinstance(result, Exception) for result in results), results
    ids = {result.file_id for result in results}  # type: ignore[attr-defined]
    assert len(results) == 4 and len(ids) == 4
    with DropfileClient(gateway_url, session_file=tmp_path / "s0.json") as client:
        for file_id in ids:
            assert client.download(file_id, tmp_path / f"{file_id}.bin").read_bytes() == data
    assert json.loads((tmp_path / "uploads.json").read_text()) == {}
