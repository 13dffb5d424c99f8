"""`dropfile share`, `links`, `unshare`, `quota` and `ls NAME` against the real stack: a
link made by the CLI downloads the file for a client with no cookies; its downloads are
counted in `links`; `unshare` stops it at once; `--password` asks on the terminal without
echoing (a real pseudo-terminal, the installed console script)."""

from __future__ import annotations

import json
import os
import pty
import select
import time
from pathlib import Path

import httpx
import pytest

from dropfile_client.cli_share import duration

from .conftest import PART, run_dropfile, uploaded_file_id, write_file

pytestmark = pytest.mark.slow


def fetch(url: str, password: str | None = None) -> httpx.Response:
    """What a stranger's browser does with the link: no cookies, the 302 followed."""
    with httpx.Client(follow_redirects=True, timeout=60) as browser:
        if password is None:
            return browser.get(url)
        return browser.post(url, data={"password": password})


def test_share_links_unshare(cli, account, tmp_path):
    source = tmp_path / "holiday photos.zip"
    data = write_file(source, PART + 1234)
    file_id = uploaded_file_id(cli("upload", str(source)))

    shared = cli("share", file_id, "--expires", "24h", "--max-downloads", "2").assert_ok()
    url = shared.out.strip()
    assert url.startswith("http://127.0.0.1:") and "/s/" in url and "\n" not in url
    assert "up to 2 download(s)" in shared.err and "shown only now" in shared.err
    link_id = shared.err.split()[1].rstrip(":")

    got = fetch(url)
    assert got.status_code == 200 and got.content == data
    assert "holiday photos.zip" in got.headers["content-disposition"]

    listing = cli("links", file_id).assert_ok().out
    assert link_id in listing and "1/2" in listing and "active" in listing
    (entry,) = json.loads(cli("links", file_id, "--json").assert_ok().out)
    assert entry["linkId"] == link_id and entry["downloadCount"] == 1
    assert entry["maxDownloads"] == 2 and entry["passwordProtected"] is False
    assert "url" not in entry

    assert cli("unshare", link_id).assert_ok().out.strip() == f"revoked link {link_id}"
    assert fetch(url).status_code == 404
    assert cli("links", file_id).assert_ok().out.strip() == "no links"
    cli("unshare", link_id).assert_one_line_error("link not found")


def test_share_with_a_password_from_stdin_and_bad_input(cli, account, tmp_path):
    source = tmp_path / "contract.txt"
    data = write_file(source, 1000)
    file_id = uploaded_file_id(cli("upload", str(source)))

    made = json.loads(
        cli("share", file_id, "--password-stdin", "--json", stdin="tr0ub4dor&3\n").assert_ok().out
    )
    assert made["passwordProtected"] is True and made["maxDownloads"] is None
    assert fetch(made["url"]).status_code == 200  # the password form
    assert fetch(made["url"], "wrong").status_code == 404
    assert fetch(made["url"], "tr0ub4dor&3").content == data

    # No terminal to ask on: refused in one line, nothing created.
    cli("share", file_id, "--password").assert_one_line_error("--password-stdin")
    assert cli("share", file_id, "--expires", "soon").code == 2
    assert cli("share", file_id, "--max-downloads", "0").code == 2
    cli("share", file_id, "--expires", "90d").assert_one_line_error("expires_in_seconds")
    cli("share", "00000000-0000-4000-8000-000000000000").assert_one_line_error("file not found")
    links = json.loads(cli("links", file_id, "--json").assert_ok().out)
    assert [link["linkId"] for link in links] == [made["linkId"]]


def test_durations():
    assert [duration(text) for text in ("90", "90s", "30m", "24h", "7d", "2w")] == [
        90,
        90,
        1800,
        86400,
        7 * 86400,
        14 * 86400,
    ]


def test_quota_and_ls_filter(cli, account, tmp_path):
    empty = json.loads(cli("quota", "--json").assert_ok().out)
    assert empty == {"usedBytes": 0, "uploadingBytes": 0, "limitBytes": 100 * 1024**3}
    sizes = {"Budget 2024.xlsx": 3000, "budget-notes.txt": 1000, "cat.jpg": 500}
    for name, size in sizes.items():
        write_file(tmp_path / name, size)
        cli("upload", str(tmp_path / name)).assert_ok()

    out = cli("quota").assert_ok().out
    assert "used:      4.4 KiB of 100.0 GiB (0.0 %)" in out
    assert "free:" in out and "uploading: 0 B" in out
    assert json.loads(cli("quota", "--json").out)["usedBytes"] == 4500

    def names(*args: str) -> list[str]:
        return sorted(entry["fileName"] for entry in json.loads(cli("ls", *args, "--json").out))

    assert names("budget") == ["Budget 2024.xlsx", "budget-notes.txt"]
    assert names("--name", "BUDGET") == ["Budget 2024.xlsx", "budget-notes.txt"]
    assert names("budget", "notes") == ["budget-notes.txt"]
    assert names("CAT") == ["cat.jpg"]
    assert names() == sorted(sizes)
    table = cli("ls", "budget").assert_ok().out
    assert "Budget 2024.xlsx" in table and "cat.jpg" not in table
    assert cli("ls", "zebra").assert_ok().out.strip() == "no files matching 'zebra'"


def _read_until(fd: int, needle: bytes, seen: bytearray, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no {needle!r} from dropfile; it said: {bytes(seen)!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                chunk = b""
            if not chunk:
                pytest.fail(f"dropfile ended before {needle!r}; it said: {bytes(seen)!r}")
            seen.extend(chunk)


def test_share_password_is_asked_on_the_terminal_without_echo(
    cli, account, tmp_path, dropfile_bin: Path, subprocess_env
):
    source = tmp_path / "diary.txt"
    data = write_file(source, 2000)
    file_id = uploaded_file_id(cli("upload", str(source)))
    secret = "n0t-on-screen"

    pid, terminal = pty.fork()
    if pid == 0:  # the child: dropfile on the terminal
        os.execve(
            str(dropfile_bin), [str(dropfile_bin), "share", file_id, "--password"], subprocess_env
        )
    seen = bytearray()
    try:
        _read_until(terminal, b"Link password: ", seen)
        os.write(terminal, secret.encode() + b"\n")
        _read_until(terminal, b"Link password (again): ", seen)
        os.write(terminal, secret.encode() + b"\n")
        _read_until(terminal, b"shown only now", seen)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 0, bytes(seen)
    said = bytes(seen).decode()
    assert secret not in said  # never echoed
    url = next(line for line in said.splitlines() if "/s/" in line).strip()
    assert fetch(url).status_code == 200  # asks for the password
    assert fetch(url, secret).content == data


def test_share_commands_in_help(dropfile_bin, subprocess_env):
    usage = run_dropfile(dropfile_bin, "--help", env=subprocess_env).assert_ok().out
    for name in ("share", "links", "unshare", "quota"):
        assert name in usage
    share = run_dropfile(dropfile_bin, "share", "--help", env=subprocess_env).assert_ok().out
    assert "--expires" in share and "--password" in share and "--max-downloads" in share
