"""The `dropfile` CLI, in-process through main(argv), against the real stack: sign up, sign
in and out, upload, list, download, delete; the session file; and errors as one line on
stderr with a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import stat
import uuid

import httpx
import pytest

from tools.processes import free_port

from .conftest import PART, PASSWORD, file_entry, uploaded_file_id, write_file


def mode_of(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_signup_keeps_the_session_in_a_file_only_the_user_can_read(cli, gateway_url):
    email = f"mode-{uuid.uuid4().hex[:8]}@example.org"
    result = cli(
        "signup", "--email", email, "--name", "Ada", "--password-stdin", stdin=PASSWORD + "\n"
    ).assert_ok()
    assert f"signed in as {email}" in result.out
    assert mode_of(cli.session_file) == 0o600
    assert mode_of(cli.config_dir) == 0o700
    session = cli.session()
    assert session["server"] == gateway_url
    assert session["email"] == email
    assert set(session["cookies"]) == {"access_token", "refresh_token", "device_id"}
    # No stray temporary files beside it.
    assert [p.name for p in cli.config_dir.iterdir()] == ["session.json"]


@pytest.mark.slow
def test_signup_login_ls_get_rm_round_trip(cli, gateway_url, tmp_path, monkeypatch):
    account = cli.signup()
    status = cli("status").assert_ok().out
    assert f"signed in: yes, as {account.email}" in status
    assert "reachable: yes" in status

    cookies = cli.session()["cookies"]
    assert cli("logout").assert_ok().out.startswith("signed out")
    assert not cli.session_file.exists()
    # Revoked on the server too: the old refresh token no longer works.
    refresh = httpx.get(
        f"{gateway_url}/api/auth/refresh",
        headers={"Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items())},
    )
    assert refresh.status_code == 401
    cli("ls").assert_one_line_error("not signed in", "dropfile login")
    cli(
        "login", "--email", account.email, "--password-stdin", stdin=account.password + "\n"
    ).assert_ok()
    assert mode_of(cli.session_file) == 0o600

    source = tmp_path / "Quarterly report.pdf"
    data = write_file(source, 2 * PART + 777)  # three parts, the last one short
    file_id = uploaded_file_id(cli("upload", str(source)))
    uuid.UUID(file_id)

    entry = file_entry(cli, file_id)
    assert entry["fileName"] == "Quarterly report.pdf"
    assert entry["size"] == len(data)
    assert entry["status"] == "UPLOADED"
    assert entry["mimeType"] == "application/pdf"
    listing = cli("ls").assert_ok().out
    assert file_id in listing and "Quarterly report.pdf" in listing and "UPLOADED" in listing

    target = tmp_path / "copy.pdf"
    got = cli("get", file_id, str(target)).assert_ok()
    assert str(target) in got.out
    assert target.read_bytes() == data

    # Never overwrite without --force; with it, the file is replaced.
    target.write_bytes(b"precious")
    cli("get", file_id, str(target)).assert_one_line_error("already exists", "--force")
    assert target.read_bytes() == b"precious"
    cli("get", file_id, str(target), "--force").assert_ok()
    assert target.read_bytes() == data

    # Without PATH: the file's own name in the current directory; a directory works too.
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    monkeypatch.chdir(downloads)
    cli("get", file_id).assert_ok()
    assert (downloads / "Quarterly report.pdf").read_bytes() == data
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cli("get", file_id, str(elsewhere)).assert_ok()
    assert (elsewhere / "Quarterly report.pdf").read_bytes() == data
    # Nothing but the downloads themselves was left behind (no temporary files).
    assert sorted(p.name for p in downloads.iterdir()) == ["Quarterly report.pdf"]

    assert cli("rm", file_id).assert_ok().out.strip() == f"deleted {file_id}"
    assert file_entry(cli, file_id) is None
    cli("get", file_id).assert_one_line_error("file not found")
    cli("rm", file_id).assert_one_line_error("file not found")


def test_ls_of_a_new_account_and_as_json(cli, account):
    assert cli("ls").assert_ok().out.strip() == "no files"
    assert json.loads(cli("ls", "--json").assert_ok().out) == []


def test_several_files_in_one_upload_command(cli, account, tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "empty.bin"
    data = write_file(first, 1000)
    second.write_bytes(b"")
    result = cli("upload", str(first), str(second), "--parallel", "2").assert_ok()
    lines = result.out.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("uploaded ") for line in lines)
    ids = [line.rsplit(" as ", 1)[1] for line in lines]
    assert file_entry(cli, ids[1])["size"] == 0
    target = tmp_path / "back.txt"
    cli("get", ids[0], str(target)).assert_ok()
    assert target.read_bytes() == data
    empty_copy = tmp_path / "empty-copy.bin"
    cli("get", ids[1], str(empty_copy)).assert_ok()
    assert empty_copy.read_bytes() == b""


def test_one_missing_file_fails_alone(cli, account, tmp_path):
    present = tmp_path / "present.txt"
    present.write_bytes(b"here")
    result = cli("upload", str(tmp_path / "missing.txt"), str(present))
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        f"dropfile: missing.txt: {tmp_path / 'missing.txt'}: No such file or directory"
    ]
    assert result.out.startswith("uploaded present.txt")
    assert "Traceback" not in result.err


@pytest.mark.slow
def test_progress_bars_render_with_rate_and_eta(cli, account, tmp_path):
    source, other = tmp_path / "shown.bin", tmp_path / "second.txt"
    data = write_file(source, PART + 1)
    write_file(other, 10)
    result = cli("upload", str(source), str(other), "--progress").assert_ok()
    assert "up shown.bin" in result.err and "up second.txt" in result.err
    assert "MiB" in result.err  # bytes done / total
    assert "Traceback" not in result.err
    file_id = result.out.splitlines()[0].rsplit(" as ", 1)[1]
    got = cli("get", file_id, str(tmp_path / "back.bin"), "--progress").assert_ok()
    assert "down shown.bin" in got.err
    assert (tmp_path / "back.bin").read_bytes() == data


def test_logout_of_another_server_keeps_this_session(cli, account):
    result = cli("logout", "--server", "http://127.0.0.1:9").assert_ok()
    assert result.out.strip() == "not signed in to http://127.0.0.1:9"
    assert cli.session_file.exists()
    assert cli("ls").code == 0


def test_wrong_password(cli, account):
    result = cli("login", "--email", account.email, "--password-stdin", stdin="not the password\n")
    result.assert_one_line_error("invalid email or password")
    assert result.code == 1


def test_signing_up_twice_with_one_email(cli, account):
    cli(
        "signup",
        "--email",
        account.email,
        "--name",
        "Eve",
        "--password-stdin",
        stdin="another password\n",
    ).assert_one_line_error("already exists")


def test_unknown_file_ids(cli, account):
    unknown = str(uuid.uuid4())
    cli("get", unknown).assert_one_line_error("file not found")
    cli("rm", unknown).assert_one_line_error("file not found")
    cli("rm", "not-a-file-id").assert_one_line_error("file_id must be a UUID")


@pytest.mark.slow
def test_server_down(cli, account, monkeypatch):
    down = f"http://127.0.0.1:{free_port()}"  # a port nobody listens on
    for argv in (
        ["login", "--email", account.email, "--password-stdin"],
        ["signup", "--email", "x@example.com", "--password-stdin"],
    ):
        cli(*argv, "--server", down, stdin="pw\n").assert_one_line_error(
            f"cannot reach {down}: connection refused"
        )
    status = cli("status", "--server", down)
    assert status.code == 1
    assert f"server:    {down}" in status.out
    assert "reachable: no (connection refused)" in status.out
    assert "Traceback" not in status.err
    # Another server has no session here: the CLI says so without calling it.
    cli("ls", "--server", down).assert_one_line_error("not signed in")
    assert cli("ls").code == 0  # the saved session was left alone

    # The saved session's own server goes down (no --server, no DROPFILE_URL).
    session = cli.session()
    session["server"] = down
    cli.session_file.write_text(json.dumps(session))
    monkeypatch.delenv("DROPFILE_URL")
    # (Retried, as a server restarting is down for a moment: briefly here.)
    for argv in (["ls"], ["get", str(uuid.uuid4())], ["rm", str(uuid.uuid4())]):
        cli(*argv, "--retries", "1").assert_one_line_error(
            f"cannot reach {down}: connection refused"
        )
    upload = cli("upload", __file__, "--retry-deadline", "1")
    upload.assert_one_line_error(f"cannot reach {down}")


def test_usage_errors_exit_2(cli):
    for argv in ([], ["upload"], ["frobnicate"], ["upload", "f", "--parallel", "0"], ["get"]):
        result = cli(*argv)
        assert result.code == 2, argv
        assert result.err.startswith("usage: dropfile")
        assert "Traceback" not in result.err


def test_help_and_version_exit_0(cli):
    assert cli("--help").code == 0
    assert "upload" in cli("--help").out
    version = cli("--version")
    assert version.code == 0 and version.out.startswith("dropfile ")


def test_a_bad_server_url_is_a_clear_error(cli):
    cli("status", "--server", "ftp://example.com").assert_one_line_error(
        "server URL must look like http://host:port"
    )


def test_a_password_needs_a_terminal_or_stdin(cli, account):
    cli("login", "--email", account.email).assert_one_line_error("--password-stdin")


def test_an_expired_session_asks_to_sign_in_again(cli, account):
    """When the refresh token is refused too, the session is over: one line, exit 1."""
    session = cli.session()
    session["cookies"]["access_token"] = "expired.or.garbage"
    session["cookies"]["refresh_token"] = "not-a-refresh-token"
    cli.session_file.write_text(json.dumps(session))
    cli("ls").assert_one_line_error("not signed in", "dropfile login")
    assert cli.session()["cookies"] == {}  # the dead session is forgotten, not retried
