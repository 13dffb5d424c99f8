"""Downloads in parallel ranges: through the real stack (moto's S3 answers the ranges), and
against a real HTTP server on 127.0.0.1 that misbehaves on purpose (range_server.py): what
is refused, what is retried, and that a failure leaves nothing behind."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from dropfile_client import DropfileClient, RetryPolicy, StorageError
from dropfile_client.download import ChecksumMismatch, fetch_to
from tests.conftest import ROOT, wait_until

from .conftest import PASSWORD, uploaded_file_id, write_file
from .range_server import Behaviour, RangeServer

KIB = 1024
RANGE = 64 * KIB
QUICK_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".dropfile-part")]


def expected_ranges(size: int, range_size: int = RANGE) -> list[tuple[int, int]]:
    return [(start, min(start + range_size, size) - 1) for start in range(0, size, range_size)]


def fetch(server: RangeServer, target: Path, *, sha256: str | None = "", **options) -> None:
    data = server.data
    fetch_to(
        options.pop("url", server.url()),
        target,
        size=options.pop("size", len(data)),
        overwrite=False,
        sha256=hashlib.sha256(data).hexdigest() if sha256 == "" else sha256,
        range_size=options.pop("range_size", RANGE),
        retry=QUICK_RETRY,
        **options,
    )


# -- through the stack ---------------------------------------------------------------------


@pytest.fixture
def client(gateway_url, events_server, tmp_path):
    with DropfileClient(
        gateway_url, session_file=tmp_path / "session.json", retry=QUICK_RETRY
    ) as client:
        client.signup(f"ranges-{uuid.uuid4().hex[:12]}@example.com", PASSWORD, "Ranges")
        yield client


def test_a_file_of_many_ranges_is_fetched_in_parallel_and_checked(client, tmp_path, s3, storage):
    source = tmp_path / "many.bin"
    data = write_file(source, 20 * RANGE + 321)  # 21 ranges
    info = client.upload(source)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    seen: list[tuple[int, int]] = []

    target = client.download(
        info.file_id,
        tmp_path / "back.bin",
        range_size=RANGE,
        parallel=4,
        on_progress=lambda done, total: seen.append((done, total)),
    )

    assert hashlib.sha256(target.read_bytes()).hexdigest() == info.sha256
    assert target.read_bytes() == data
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)  # monotonic
    assert seen[-1] == (len(data), len(data))
    assert leftovers(tmp_path) == []

    # Storage hands back other bytes of the same size: refused, whichever range holds them.
    corrupted = bytearray(data)
    corrupted[13 * RANGE + 5] ^= 1
    s3.put_object(Bucket=storage["bucket"], Key=info.s3_key, Body=bytes(corrupted))
    with pytest.raises(ChecksumMismatch, match="download corrupted"):
        client.download(info.file_id, tmp_path / "bad.bin", range_size=RANGE, parallel=4)
    assert not (tmp_path / "bad.bin").exists()
    assert leftovers(tmp_path) == []


def test_the_cli_downloads_with_the_parallel_option(cli, account, tmp_path):
    source = tmp_path / "cli.bin"
    data = write_file(source, 3 * 1024 * KIB + 7)
    file_id = uploaded_file_id(cli("upload", str(source)))
    target = tmp_path / "cli-back.bin"
    cli("get", file_id, str(target), "--parallel", "2").assert_ok()
    assert target.read_bytes() == data


# -- against a misbehaving server ----------------------------------------------------------


@pytest.fixture(params=["http.client", "httpx"])
def via(request) -> dict:
    """Both ways a download's GETs are sent: straight over http.client, or through httpx
    (what a configured proxy or a caller's own transport gets)."""
    return {} if request.param == "http.client" else {"transport": httpx.HTTPTransport()}


def test_ranges_cover_the_file_once_and_small_files_are_one_plain_get(tmp_path, via):
    data = os.urandom(10 * RANGE + 1)
    with RangeServer(data) as server:
        fetch(server, tmp_path / "big.bin", parallel=3, **via)
    assert (tmp_path / "big.bin").read_bytes() == data
    assert server.ranges(206)[0] == (0, RANGE - 1)  # asked alone, before the others
    assert sorted(server.ranges()) == expected_ranges(len(data))

    small = os.urandom(RANGE)
    with RangeServer(small) as server:
        fetch(server, tmp_path / "small.bin", **via)
    assert (tmp_path / "small.bin").read_bytes() == small
    assert server.ranges() == [None]

    with RangeServer(b"") as server:
        fetch(server, tmp_path / "empty.bin", **via)
    assert (tmp_path / "empty.bin").read_bytes() == b""
    assert server.ranges() == [None]


def test_a_server_that_ignores_range_is_read_as_one_stream(tmp_path, via):
    data = os.urandom(5 * RANGE + 3)
    with RangeServer(data, Behaviour(ignore_range=True)) as server:
        fetch(server, tmp_path / "one.bin", parallel=4, **via)
    assert (tmp_path / "one.bin").read_bytes() == data
    # The first range's answer was the whole file: nothing else was asked.
    assert [(r.range, r.status) for r in server.requests] == [((0, RANGE - 1), 200)]


def test_a_200_after_ranges_is_refused_and_nothing_is_left(tmp_path, via):
    data = os.urandom(8 * RANGE)
    with RangeServer(data, Behaviour(whole_file_after=2)) as server:
        with pytest.raises(StorageError, match=r"whole file \(200 instead of 206\)"):
            fetch(server, tmp_path / "mixed.bin", parallel=2, **via)
    assert not (tmp_path / "mixed.bin").exists()
    assert leftovers(tmp_path) == []


def test_a_file_of_another_size_in_storage_is_refused(tmp_path, via):
    data = os.urandom(4 * RANGE)
    with RangeServer(data, Behaviour(claimed_size=len(data) + 1)) as server:
        with pytest.raises(
            StorageError, match=f"is {len(data) + 1} bytes, not the {len(data)} recorded"
        ):
            fetch(server, tmp_path / "sized.bin", **via)
    with RangeServer(data) as server:  # a small file's plain GET: its Content-Length
        with pytest.raises(StorageError, match=f"is {len(data)} bytes, not the 100 recorded"):
            fetch(server, tmp_path / "sized.bin", size=100, range_size=RANGE * 8, **via)
    assert not (tmp_path / "sized.bin").exists()
    assert leftovers(tmp_path) == []


def test_an_expired_url_is_final_without_a_fresh_one(tmp_path, via):
    data = os.urandom(4 * RANGE)
    with RangeServer(data, Behaviour(expired_paths={"/old"})) as server:
        with pytest.raises(StorageError) as refused:
            fetch(server, tmp_path / "late.bin", url=server.url("/old"), **via)
    assert "403 AccessDenied: Request has expired" in refused.value.message
    assert "download URL expired" in refused.value.message
    assert len(server.requests) == 1  # not retried: the same URL would be refused again
    assert not (tmp_path / "late.bin").exists()
    assert leftovers(tmp_path) == []


def test_an_expired_url_is_replaced_once_for_all_ranges(tmp_path, via):
    data = os.urandom(6 * RANGE + 9)
    fresh_urls: list[str] = []
    with RangeServer(data, Behaviour(expired_paths={"/old"})) as server:

        def renew() -> str:
            fresh_urls.append(server.url("/new"))
            return fresh_urls[-1]

        fetch(server, tmp_path / "renewed.bin", url=server.url("/old"), renew_url=renew, **via)
        assert (tmp_path / "renewed.bin").read_bytes() == data
        assert len(fresh_urls) == 1
        assert sorted(r.range for r in server.requests if r.path == "/new") == expected_ranges(
            len(data)
        )

        # A fresh URL refused as well: final.
        with pytest.raises(StorageError, match="Request has expired"):
            fetch(
                server,
                tmp_path / "never.bin",
                url=server.url("/old"),
                renew_url=lambda: server.url("/old"),
                **via,
            )
    assert not (tmp_path / "never.bin").exists()
    assert leftovers(tmp_path) == []


def test_a_failing_range_is_retried_from_where_it_stopped(tmp_path, via):
    data = os.urandom(6 * RANGE)
    behaviour = Behaviour(unavailable={2 * RANGE: 2}, cut_short={4 * RANGE: 1})
    seen: list[int] = []
    with RangeServer(data, behaviour) as server:
        fetch(
            server,
            tmp_path / "retried.bin",
            parallel=3,
            on_progress=lambda done, total: seen.append(done),
            **via,
        )
    assert (tmp_path / "retried.bin").read_bytes() == data
    statuses = [(r.range, r.status) for r in server.requests if r.range[0] == 2 * RANGE]
    assert statuses == [((2 * RANGE, 3 * RANGE - 1), 503)] * 2 + [((2 * RANGE, 3 * RANGE - 1), 206)]
    # The cut range was asked again from its first missing byte, not from its start.
    assert (4 * RANGE + RANGE // 2, 5 * RANGE - 1) in server.ranges(206)
    assert seen == sorted(seen) and seen[-1] == len(data)  # no byte counted twice


def test_a_range_failing_every_attempt_stops_the_download_at_once(tmp_path, via):
    data = os.urandom(12 * RANGE)
    hold = threading.Event()
    # Range 1 keeps failing once two other ranges are held by the server.
    behaviour = Behaviour(unavailable={RANGE: 99}, hold=hold, fail_when_held=2)
    with RangeServer(data, behaviour) as server:
        with pytest.raises(
            StorageError,
            match=r"bytes 65536-131071 failed 3 times "
            r"\(last: 503 SlowDown",
        ):
            fetch(server, tmp_path / "failed.bin", parallel=4, **via)
        # The failure did not wait for the ranges still in flight.
        assert not hold.is_set() and server.held >= 2
        assert not (tmp_path / "failed.bin").exists()
        assert leftovers(tmp_path) == []
        hold.set()


def test_checksum_mismatch_leaves_nothing(tmp_path, via):
    data = os.urandom(7 * RANGE + 5)
    with RangeServer(data) as server:
        with pytest.raises(ChecksumMismatch, match="download corrupted"):
            fetch(server, tmp_path / "wrong.bin", sha256="0" * 64, parallel=4, **via)
    assert not (tmp_path / "wrong.bin").exists()
    assert leftovers(tmp_path) == []


_FETCH = """
import sys
from pathlib import Path
from dropfile_client.download import fetch_to
try:
    fetch_to(sys.argv[1], Path(sys.argv[2]), size=int(sys.argv[3]), overwrite=False,
             range_size=65536)
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_ctrl_c_mid_download_leaves_nothing(tmp_path):
    data = os.urandom(12 * RANGE)
    hold = threading.Event()
    with RangeServer(data, Behaviour(hold=hold)) as server:
        process = subprocess.Popen(
            [sys.executable, "-c", _FETCH, server.url(), str(tmp_path / "cut.bin"), str(len(data))],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
        )
        try:
            wait_until(lambda: server.held >= 2, timeout=60, what="ranges in flight")
            assert leftovers(tmp_path) != []  # the temporary file is being written
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=60)
        finally:
            hold.set()
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 130, err
    assert not (tmp_path / "cut.bin").exists()
    assert leftovers(tmp_path) == []
