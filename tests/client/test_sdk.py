"""DropfileClient used from a script, against the real stack: results as objects, errors as
ApiError with the server's status and message, progress callbacks, and sessions that stay
where they belong."""

from __future__ import annotations

import json
import uuid

import pytest

from dropfile_client import ApiError, DropfileClient, NotSignedIn, UploadInterrupted

from .conftest import PART, PASSWORD, write_file


@pytest.fixture
def client(gateway_url, events_server, tmp_path):
    with DropfileClient(gateway_url, session_file=tmp_path / "session.json") as client:
        client.signup(f"sdk-{uuid.uuid4().hex[:12]}@example.com", PASSWORD, "Script")
        yield client


def test_upload_list_download_delete(client, tmp_path):
    source = tmp_path / "data.csv"
    data = write_file(source, 2 * PART + 1)
    seen: list[tuple[int, int]] = []

    info = client.upload(
        source, on_progress=lambda done, total: seen.append((done, total)), parallel=2
    )

    assert info.status == "UPLOADED"
    assert (info.name, info.size, info.mime_type) == ("data.csv", len(data), "text/csv")
    assert seen[-1] == (len(data), len(data))
    assert all(0 <= done <= total == len(data) for done, total in seen)
    assert [f.file_id for f in client.list()] == [info.file_id]

    target = client.download(info.file_id, tmp_path / "back.csv")
    assert target.read_bytes() == data
    client.delete(info.file_id)
    assert client.list() == []


def test_refusals_are_api_errors_with_status_and_message(client):
    with pytest.raises(ApiError) as missing:
        client.delete(str(uuid.uuid4()))
    assert (missing.value.status, missing.value.message) == (404, "file not found")
    with pytest.raises(ApiError) as unknown:
        client.download(str(uuid.uuid4()))
    assert unknown.value.status == 404


def test_a_wrong_password_is_a_401(gateway_url, client):
    with DropfileClient(gateway_url, persist_session=False) as other:
        with pytest.raises(ApiError) as refused:
            other.login(client.email, "wrong password")
    assert refused.value.status == 401
    assert refused.value.message == "invalid email or password"


def test_an_interrupted_upload_is_aborted_and_stays_a_keyboard_interrupt(
    client, tmp_path, s3, storage
):
    source = tmp_path / "stop.bin"
    write_file(source, 2 * PART)

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt  # as if Ctrl-C arrived while a part was being sent

    with pytest.raises(KeyboardInterrupt) as interrupted:
        client.upload(source, on_progress=stop)
    assert isinstance(interrupted.value, UploadInterrupted)
    assert interrupted.value.aborted
    [failed] = client.list()
    assert failed.status == "FAILED"
    assert "Uploads" not in s3.list_multipart_uploads(
        Bucket=storage["bucket"], Prefix=failed.s3_key
    )


def test_a_session_is_only_sent_to_its_own_server(gateway_url, client, tmp_path, monkeypatch):
    monkeypatch.delenv("DROPFILE_URL", raising=False)
    session_file = tmp_path / "session.json"
    assert json.loads(session_file.read_text())["server"] == gateway_url
    with DropfileClient("http://127.0.0.1:9", session_file=session_file) as other:
        assert not other.signed_in
        with pytest.raises(NotSignedIn):
            other.list()
    with DropfileClient(session_file=session_file) as same:  # no server: the session's
        assert same.server == gateway_url and same.signed_in
        assert same.list() == []


def test_persist_session_false_writes_nothing(gateway_url, events_server, tmp_path, monkeypatch):
    monkeypatch.setenv("DROPFILE_CONFIG_DIR", str(tmp_path / "config"))
    with DropfileClient(gateway_url, persist_session=False) as client:
        client.signup(f"mem-{uuid.uuid4().hex[:12]}@example.com", PASSWORD, "Mem")
        assert client.list() == []
        client.logout()
    assert not (tmp_path / "config").exists()
