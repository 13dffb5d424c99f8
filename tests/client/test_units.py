"""The SDK's pure parts, without servers: where the session lives and how it is written,
which server is used, how a file splits into parts and is hashed, backoff, and download
names."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dropfile_client.checksums import (
    DEFAULT_PART_CHECKSUM,
    READ_AHEAD,
    FileHasher,
    part_checksum_algorithm,
)
from dropfile_client.client import token_email
from dropfile_client.config import DEFAULT_SERVER, config_dir, normalize_server, resolve_server
from dropfile_client.download import safe_file_name, target_path
from dropfile_client.errors import DropfileError
from dropfile_client.parts import V1_PART_SIZE, Cancelled, Part, layout, read_blocks
from dropfile_client.retry import Backoff, RetryPolicy, parse_retry_after
from dropfile_client.session import Session, SessionStore
from tests.upload.v2_helpers import crc32c_b64, sha256_b64

PART = V1_PART_SIZE


def test_config_dir_prefers_the_override_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_dir({"DROPFILE_CONFIG_DIR": "/x/y", "XDG_CONFIG_HOME": "/xdg"}) == Path("/x/y")
    assert config_dir({"XDG_CONFIG_HOME": "/xdg"}) == Path("/xdg/dropfile")
    assert config_dir({}) == tmp_path / ".config" / "dropfile"


def test_the_server_is_the_flag_then_the_environment_then_the_session_then_local():
    env = {"DROPFILE_URL": "http://env:1/"}
    assert resolve_server("https://flag.example", "http://saved:3", env) == "https://flag.example"
    assert resolve_server(None, "http://saved:3", env) == "http://env:1"
    assert resolve_server(None, "http://saved:3/", {}) == "http://saved:3"
    assert resolve_server(None, None, {}) == DEFAULT_SERVER


@pytest.mark.parametrize("bad", ["localhost:8080", "ftp://host", "http://", "http://h/?q=1"])
def test_server_urls_must_be_http(bad):
    with pytest.raises(DropfileError, match="server URL"):
        normalize_server(bad)


def test_the_session_file_is_0600_in_a_0700_folder_even_with_a_lax_umask(tmp_path):
    store = SessionStore(tmp_path / "conf" / "session.json")
    previous = os.umask(0)
    try:
        store.save(
            Session(
                "http://h:1",
                {"access_token": "a", "refresh_token": "r", "device_id": "d", "other": "x"},
                "a@b.c",
            )
        )
    finally:
        os.umask(previous)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert json.loads(store.path.read_text())["cookies"] == {
        "access_token": "a",
        "refresh_token": "r",
        "device_id": "d",
    }
    loaded = store.load()
    assert (loaded.server, loaded.email, loaded.signed_in) == ("http://h:1", "a@b.c", True)


def test_saving_replaces_the_file_and_keeps_it_private(tmp_path):
    store = SessionStore(tmp_path / "session.json")
    store.path.write_text("{}")
    store.path.chmod(0o644)  # an old, too open file is replaced, not rewritten in place
    store.save(Session("http://h:1", {"refresh_token": "r"}))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.load().cookies == {"refresh_token": "r"}
    assert [p.name for p in tmp_path.iterdir()] == ["session.json"]


@pytest.mark.parametrize("content", ["", "not json", "[]", '{"server": 5}'])
def test_a_damaged_session_file_means_signed_out(tmp_path, content):
    path = tmp_path / "session.json"
    path.write_text(content)
    assert SessionStore(path).load() is None


def test_clear_forgets_the_session(tmp_path):
    store = SessionStore(tmp_path / "session.json")
    store.save(Session("http://h:1"))
    store.clear()
    store.clear()  # twice is fine
    assert store.load() is None


def test_layout_of_four_parts_and_a_short_one():
    parts = layout(4 * PART + 10, 5)
    assert [(p.number, p.offset, p.size) for p in parts] == [
        (1, 0, PART),
        (2, PART, PART),
        (3, 2 * PART, PART),
        (4, 3 * PART, PART),
        (5, 4 * PART, 10),
    ]
    assert [p.index for p in parts] == [0, 1, 2, 3, 4]


def test_layout_of_an_empty_file_and_of_exact_parts():
    assert layout(0, 1) == [Part(1, 0, 0)]
    assert [p.size for p in layout(2 * PART, 2)] == [PART, PART]


def test_a_server_asking_for_another_part_count_is_refused():
    with pytest.raises(DropfileError, match="asked for 3 parts"):
        layout(PART + 1, 3)


def test_parts_are_read_in_small_blocks(tmp_path):
    path = tmp_path / "f"
    data = os.urandom(700_000)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        counted = []
        blocks = list(
            read_blocks(
                fd,
                Part(2, 100_000, 600_000),
                cancel=threading.Event(),
                on_bytes=counted.append,
                file_label="f",
            )
        )
    finally:
        os.close(fd)
    assert b"".join(blocks) == data[100_000:700_000]
    assert max(len(b) for b in blocks) <= 256 * 1024
    assert sum(counted) == 600_000


def test_a_file_that_shrinks_is_an_error(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(DropfileError, match="got shorter"):
            list(
                read_blocks(
                    fd,
                    Part(1, 0, 20),
                    cancel=threading.Event(),
                    on_bytes=lambda n: None,
                    file_label="f",
                )
            )
    finally:
        os.close(fd)


def test_backoff_grows_with_full_jitter_up_to_the_cap():
    policy = RetryPolicy(attempts=6, base_delay=0.5, max_delay=4.0)
    rng = random.Random(7)
    for retry, step in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (9, 4.0)]:
        delays = [policy.delay(retry, rng=rng) for _ in range(200)]
        assert all(0 <= d <= step for d in delays)
        # Anywhere from nothing to the whole step: clients that failed together spread out.
        assert min(delays) < step / 4 and max(delays) > 3 * step / 4


def test_a_retry_waits_at_least_what_retry_after_asks():
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    assert all(policy.delay(1, retry_after=3.0) >= 3.0 for _ in range(50))
    assert all(3.0 <= policy.delay(4, retry_after=3.0) <= 4.0 for _ in range(50))


def test_a_calls_retries_end_with_its_tries_or_its_deadline():
    now = [0.0]
    backoff = Backoff(RetryPolicy(attempts=3, deadline=None), clock=lambda: now[0])
    assert backoff.next_wait() is not None and backoff.next_wait() is not None
    assert backoff.next_wait() is None  # three tries in all
    backoff = Backoff(RetryPolicy(attempts=100, max_delay=1.0, deadline=10.0), clock=lambda: now[0])
    now[0] = 9.5
    assert backoff.next_wait(retry_after=5.0) == 0.5  # one last try, at the deadline
    now[0] = 10.0
    assert backoff.next_wait() is None
    assert backoff.summary() == "2 tries over 10 s"


def test_retry_after_in_seconds_or_as_a_date():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    for unusable in (None, "", "soon", "nan"):
        assert parse_retry_after(unusable) is None


def test_retry_policies_must_make_sense():
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay=2, max_delay=1)
    with pytest.raises(ValueError):
        RetryPolicy(deadline=-1)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("report.pdf", "report.pdf"),
        ("../../.bashrc", ".._.._.bashrc"),
        ("a/b\\c", "a_b_c"),
        ("..", "dropfile-id"),
        ("", "dropfile-id"),
        ("tab\there\u202e", "tab_here_"),
    ],
)
def test_download_names_stay_in_their_folder(name, expected):
    assert safe_file_name(name, "dropfile-id") == expected


def test_download_targets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert target_path(None, "a.txt", "id") == tmp_path / "a.txt"
    assert target_path(tmp_path, "a.txt", "id") == tmp_path / "a.txt"
    assert target_path(tmp_path / "b.txt", "a.txt", "id") == tmp_path / "b.txt"


def test_token_email_reads_the_claim_without_trusting_it():
    import base64

    payload = base64.urlsafe_b64encode(json.dumps({"email": "a@b.c"}).encode()).rstrip(b"=")
    assert token_email(f"h.{payload.decode()}.s") == "a@b.c"
    assert token_email("garbage") is None
    assert token_email(None) is None


@pytest.mark.parametrize("algorithm, reference", [("CRC32C", crc32c_b64), ("SHA256", sha256_b64)])
def test_one_pass_makes_each_part_checksum_and_the_whole_files_sha256(
    tmp_path, algorithm, reference
):
    path = tmp_path / "f"
    data = os.urandom(350_000)
    path.write_bytes(data)
    parts = layout(len(data), 4, 100_000)
    fd = os.open(path, os.O_RDONLY)
    try:
        with FileHasher(fd, parts, algorithm=algorithm.lower(), file_label="f") as hasher:
            asked = {number: hasher.checksum(number) for number in (4, 1, 3, 2)}
            whole = hasher.file_sha256()
    finally:
        os.close(fd)
    assert asked == {p.number: reference(data[p.offset : p.offset + p.size]) for p in parts}
    assert whole == hashlib.sha256(data).hexdigest()


def test_crc32c_is_the_castagnoli_one_and_the_default():
    assert DEFAULT_PART_CHECKSUM == "CRC32C"  # google-crc32c's C extension is installed
    assert crc32c_b64(b"123456789") == base64.b64encode(bytes.fromhex("e3069283")).decode()
    assert part_checksum_algorithm("sha256") == "SHA256"
    with pytest.raises(ValueError, match="unknown part checksum 'crc32'"):
        part_checksum_algorithm("crc32")


def test_a_file_that_shrinks_fails_whoever_waits_for_its_checksums(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 150)
    fd = os.open(path, os.O_RDONLY)
    try:
        with FileHasher(fd, layout(300, 3, 100), algorithm="CRC32C", file_label="f") as hasher:
            assert hasher.checksum(1) == crc32c_b64(b"x" * 100)
            for ask in (lambda: hasher.checksum(3), hasher.file_sha256):
                with pytest.raises(DropfileError, match="f got shorter"):
                    ask()
    finally:
        os.close(fd)


def test_the_pass_reads_ahead_only_so_far_and_stops_when_closed(tmp_path):
    path = tmp_path / "sparse"
    with open(path, "wb") as handle:
        handle.truncate(READ_AHEAD + 2000)
    far = Part(2, READ_AHEAD + 1000, 1000)  # beyond the read-ahead of part 1
    fd = os.open(path, os.O_RDONLY)
    try:
        hasher = FileHasher(fd, [Part(1, 0, 1000), far], algorithm="CRC32C", file_label="f")
        hasher.checksum(1)
        hasher.close()
        with pytest.raises(Cancelled):  # never asked for before the close: never hashed
            hasher.checksum(2)
    finally:
        os.close(fd)
