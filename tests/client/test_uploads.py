"""Uploads by the in-process CLI through a real, fault-injecting HTTP proxy (HTTP_PROXY):
parts in parallel, retries of failed part PUTs, fresh URLs for expired ones, and access
tokens that expire before or during an upload."""

from __future__ import annotations

import json
import time

import jwt
import pytest

from dropfile_client import uploader

from .conftest import PART, file_entry, uploaded_file_id, write_file

# Parts are recorded with their checksums (v2), in batches, formerly through record-chunk.
RECORD_PARTS = r"^/api/v2/files/[^/]+/parts/batch$"


def recorded_parts(fault_proxy) -> list[int]:
    """The part numbers of every batch the gateway accepted."""
    return [
        number
        for call in fault_proxy.calls("POST", RECORD_PARTS)
        if call.status == 200
        for number in call.recorded_parts
    ]


PART_URLS = r"^/api/v2/files/[^/]+/part-urls$"
REFRESH = r"^/api/auth/refresh$"


def download(cli, file_id: str, tmp_path) -> bytes:
    target = tmp_path / f"download-{file_id}"
    cli("get", file_id, str(target)).assert_ok()
    return target.read_bytes()


@pytest.mark.slow
def test_parts_go_up_in_parallel_and_arrive_intact(cli, account, tmp_path, fault_proxy):
    source = tmp_path / "big.bin"
    data = write_file(source, 4 * PART + 12_345)  # four full parts and a short fifth
    # Part PUTs are held until four are in flight at once: only a client that really
    # sends four at a time gets through without waiting for the proxy's 30 s timeout.
    fault_proxy.hold_until_concurrent(4)

    file_id = uploaded_file_id(cli("upload", str(source), "--parallel", "4"))

    assert fault_proxy.max_in_flight == 4
    puts = fault_proxy.puts()
    assert sorted(p.part_number for p in puts) == [1, 2, 3, 4, 5]
    assert all(p.status == 200 for p in puts)
    assert sorted(recorded_parts(fault_proxy)) == [1, 2, 3, 4, 5]
    assert file_entry(cli, file_id)["status"] == "UPLOADED"
    assert download(cli, file_id, tmp_path) == data


@pytest.mark.slow
def test_the_stored_parts_are_recorded_together_and_the_last_at_once(
    cli, account, tmp_path, fault_proxy, monkeypatch
):
    # A window longer than the test's timeout: every part waits for the others, and the
    # batch leaves when the last PUT is done, not when the window ends.
    monkeypatch.setattr(uploader, "RECORD_WINDOW_SECONDS", 3600.0)
    source = tmp_path / "batched.bin"
    data = write_file(source, 4 * PART + 1)

    file_id = uploaded_file_id(cli("upload", str(source), "--parallel", "2"))

    batches = fault_proxy.calls("POST", RECORD_PARTS)
    assert [(c.status, sorted(c.recorded_parts)) for c in batches] == [(200, [1, 2, 3, 4, 5])]
    assert download(cli, file_id, tmp_path) == data


@pytest.mark.slow
def test_a_part_that_fails_twice_is_retried_until_it_succeeds(cli, account, tmp_path, fault_proxy):
    source = tmp_path / "flaky.bin"
    data = write_file(source, 2 * PART + 99)
    fault_proxy.fail_part(2, times=2, status=503)

    result = cli("upload", str(source), "-v")
    file_id = uploaded_file_id(result)

    attempts = fault_proxy.puts(2)
    assert [(p.status, p.injected) for p in attempts] == [(503, True), (503, True), (200, False)]
    assert [p.status for p in fault_proxy.puts(1) + fault_proxy.puts(3)] == [200, 200]
    assert "part 2: 503 ServiceUnavailable" in result.err  # -v reports the retries
    assert "Traceback" not in result.err
    assert download(cli, file_id, tmp_path) == data


def test_a_part_storage_refuses_for_good_aborts_the_upload(
    cli, account, tmp_path, fault_proxy, s3, storage
):
    # A refusal that no retry can change (unlike 5xx, kept and resumable: test_retries.py).
    source = tmp_path / "doomed.bin"
    write_file(source, PART + 1)
    fault_proxy.fail_part(1, times=100, status=400)

    result = cli("upload", str(source))

    line = result.assert_one_line_error(
        "doomed.bin: storage refused part 1", "the partial upload was aborted"
    )
    assert "400" in line
    assert len(fault_proxy.puts(1)) == 1  # not retried
    assert len(fault_proxy.calls("POST", r"^/api/files/abort-upload$")) == 1
    files = json.loads(cli("ls", "--json").assert_ok().out)
    assert [f["status"] for f in files] == ["FAILED"]
    user_id = jwt.decode(
        cli.session()["cookies"]["access_token"], options={"verify_signature": False}
    )["sub"]
    assert "Uploads" not in s3.list_multipart_uploads(
        Bucket=storage["bucket"], Prefix=f"users/{user_id}/"
    )


@pytest.mark.slow
def test_an_expired_url_is_replaced_by_a_fresh_one(cli, account, tmp_path, fault_proxy):
    source = tmp_path / "slow.bin"
    data = write_file(source, 2 * PART + 5)
    fault_proxy.expire_part(3)  # 403 "Request has expired" until fresh URLs are fetched

    file_id = uploaded_file_id(cli("upload", str(source), "--parallel", "1"))

    assert [p.status for p in fault_proxy.puts(3)] == [403, 200]
    # URLs come lazily from part-urls: the first batch, then a fresh one after the 403.
    fresh = fault_proxy.calls("POST", PART_URLS)
    assert len(fresh) == 2 and all(call.status == 200 for call in fresh)
    assert all(file_id in call.path for call in fresh)
    assert download(cli, file_id, tmp_path) == data


def expired_copy_of(token: str, make_token) -> str:
    """The same user's access token, signed by the stack's key, expired a minute ago."""
    claims = jwt.decode(token, options={"verify_signature": False})
    now = int(time.time())
    return make_token(user_id=claims["sub"], email=claims["email"], iat=now - 3600, exp=now - 60)


def test_an_expired_access_token_in_the_session_is_refreshed(
    cli, account, tmp_path, fault_proxy, make_token
):
    session = cli.session()
    expired = expired_copy_of(session["cookies"]["access_token"], make_token)
    old_refresh_token = session["cookies"]["refresh_token"]
    session["cookies"]["access_token"] = expired
    cli.session_file.write_text(json.dumps(session))
    source = tmp_path / "later.bin"
    data = write_file(source, PART + 1000)

    file_id = uploaded_file_id(cli("upload", str(source)))

    first = fault_proxy.calls("POST", r"^/api/v2/files$")
    assert [c.status for c in first] == [401, 201]  # refused, refreshed, retried (created)
    assert len(fault_proxy.calls("GET", REFRESH)) == 1
    saved = cli.session()["cookies"]
    assert saved["access_token"] != expired
    assert saved["refresh_token"] != old_refresh_token  # rotated, and saved
    assert download(cli, file_id, tmp_path) == data


@pytest.mark.slow
def test_an_access_token_that_expires_mid_upload_is_refreshed_once(
    cli, account, tmp_path, fault_proxy, make_token
):
    token = cli.session()["cookies"]["access_token"]
    fault_proxy.expire_access_token(token, expired_copy_of(token, make_token), after_part=1)
    source = tmp_path / "long.bin"
    data = write_file(source, 4 * PART + 1)

    file_id = uploaded_file_id(cli("upload", str(source), "--parallel", "4"))

    records = fault_proxy.calls("POST", RECORD_PARTS)
    assert 401 in [c.status for c in records]  # the token did expire mid-upload
    assert sorted(set(recorded_parts(fault_proxy))) == [1, 2, 3, 4, 5]
    # However many parts saw the 401 at once, the session was refreshed exactly once
    # (the refresh token rotates: a second refresh with the old one would end it).
    assert len(fault_proxy.calls("GET", REFRESH)) == 1
    assert cli.session()["cookies"]["access_token"] != token
    assert download(cli, file_id, tmp_path) == data


def test_a_small_file_goes_up_in_one_put(cli, account, tmp_path, fault_proxy):
    """Up to 5 MiB: created as a single PUT with its checksum (the reply has the URL), one
    PUT of the whole file, then complete: no part URLs asked for, no part recorded, and
    the file is UPLOADED as the upload ends. One byte more: a multipart upload."""
    source = tmp_path / "small.bin"
    data = write_file(source, PART)

    file_id = uploaded_file_id(cli("upload", str(source)))

    [created] = fault_proxy.calls("POST", r"^/api/v2/files$")
    assert created.json_body["singlePut"] is True and created.json_body["partChecksum"]
    storage_puts = fault_proxy.calls("PUT", r"/users/")
    assert [(p.status, p.part_number) for p in storage_puts] == [(200, None)]
    algorithm = created.json_body["checksumAlgorithm"].lower()
    assert storage_puts[0].checksum_header == f"x-amz-checksum-{algorithm}"  # signed, sent
    assert fault_proxy.calls("POST", PART_URLS) == []
    assert fault_proxy.calls("POST", RECORD_PARTS) == []
    assert len(fault_proxy.calls("POST", r"^/api/v2/files/[^/]+/complete$")) == 1
    assert file_entry(cli, file_id)["status"] == "UPLOADED"
    assert download(cli, file_id, tmp_path) == data

    bigger = tmp_path / "bigger.bin"
    write_file(bigger, PART + 1)
    uploaded_file_id(cli("upload", str(bigger)))
    [_, second] = fault_proxy.calls("POST", r"^/api/v2/files$")
    assert "singlePut" not in second.json_body
    assert sorted(p.part_number for p in fault_proxy.puts()) == [1, 2]
