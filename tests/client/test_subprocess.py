"""The installed `dropfile` command (.venv/bin/dropfile: `make install` installs client/
editable) as a real subprocess: a whole session, Ctrl-C in the middle of an upload, and
memory that stays bounded by the parts in flight rather than the file's size."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys

import jwt
import pytest

from tests.conftest import wait_until

from .conftest import MIB, PART, PASSWORD, run_dropfile, uploaded_file_id, write_file

pytestmark = pytest.mark.slow


def test_a_whole_session_through_the_installed_command(
    dropfile_bin, subprocess_env, config_dir, tmp_path
):
    env = subprocess_env
    email = f"proc-{os.getpid()}-{os.urandom(3).hex()}@example.com"
    signup = run_dropfile(
        dropfile_bin,
        "signup",
        "--email",
        email,
        "--name",
        "Ada",
        "--password-stdin",
        stdin=PASSWORD + "\n",
        env=env,
    )
    assert signup.code == 0, signup.err
    assert stat.S_IMODE((config_dir / "session.json").stat().st_mode) == 0o600

    status = run_dropfile(dropfile_bin, "status", env=env)
    assert status.code == 0 and f"signed in: yes, as {email}" in status.out

    source = tmp_path / "notes.txt"
    data = write_file(source, PART + 3)
    file_id = uploaded_file_id(run_dropfile(dropfile_bin, "upload", str(source), env=env))
    listing = json.loads(run_dropfile(dropfile_bin, "ls", "--json", env=env).out)
    assert [(f["fileId"], f["status"]) for f in listing] == [(file_id, "UPLOADED")]

    target = tmp_path / "copy.txt"
    assert run_dropfile(dropfile_bin, "get", file_id, str(target), env=env).code == 0
    assert target.read_bytes() == data
    assert run_dropfile(dropfile_bin, "rm", file_id, env=env).code == 0

    missing = run_dropfile(dropfile_bin, "get", file_id, env=env)
    assert missing.code == 1
    assert missing.err == "dropfile: file not found\n"
    usage = run_dropfile(dropfile_bin, "get", env=env)
    assert usage.code == 2 and "usage: dropfile get" in usage.err

    assert run_dropfile(dropfile_bin, "logout", env=env).code == 0
    assert not (config_dir / "session.json").exists()


def test_ctrl_c_mid_upload_aborts_it(
    dropfile_bin, subprocess_env, cli, account, tmp_path, fault_proxy, s3, storage
):
    source = tmp_path / "interrupted.bin"
    write_file(source, 3 * PART)
    fault_proxy.hold_part(2)  # part 2 is in flight, unanswered, when Ctrl-C comes
    env = {**subprocess_env, **fault_proxy.env()}
    process = subprocess.Popen(
        [str(dropfile_bin), "upload", str(source), "--parallel", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: (
                any(
                    c.status == 200
                    for c in fault_proxy.calls("POST", r"^/api/v2/files/[^/]+/parts/batch$")
                )
                and 2 in fault_proxy.arrived
            ),
            timeout=60,
            what="part 1 to be recorded and part 2 to be on its way",
        )
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 130, err
    assert err == (
        "dropfile: interrupted; aborted the upload of interrupted.bin (nothing was kept)\n"
    )
    assert out == ""
    assert len(fault_proxy.calls("POST", r"^/api/files/abort-upload$")) == 1
    # Storage keeps nothing of it, and the file is FAILED.
    user_id = jwt.decode(
        cli.session()["cookies"]["access_token"], options={"verify_signature": False}
    )["sub"]
    uploads = s3.list_multipart_uploads(Bucket=storage["bucket"], Prefix=f"users/{user_id}/")
    assert "Uploads" not in uploads
    files = json.loads(cli("ls", "--json").assert_ok().out)
    assert [f["status"] for f in files] == ["FAILED"]


# Peak memory of a process started from a small launcher: a child forked from pytest itself
# would report pytest's size (Linux keeps the pre-exec peak in ru_maxrss).
_MEASURE = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:], stdout=subprocess.DEVNULL)
with open(sys.argv[1], "w") as report:
    report.write(f"{code} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
"""


def _max_rss_bytes(binary, *args: str, env: dict[str, str], cwd) -> tuple[int, int]:
    """Runs the command; (exit code, its peak resident memory in bytes)."""
    report = cwd / "rss.txt"
    subprocess.run(
        [sys.executable, "-c", _MEASURE, str(report), str(binary), *args],
        env=env,
        check=True,
        timeout=300,
    )
    code, kib = report.read_text().split()
    return int(code), int(kib) * 1024  # Linux reports KiB


def test_memory_is_bounded_by_the_parts_in_flight_not_the_file(
    dropfile_bin, subprocess_env, account, tmp_path
):
    size = 48 * MIB
    source = tmp_path / "large.bin"
    write_file(source, size)
    code, baseline = _max_rss_bytes(dropfile_bin, "status", env=subprocess_env, cwd=tmp_path)
    assert code == 0
    code, peak = _max_rss_bytes(
        dropfile_bin, "upload", str(source), "--parallel", "2", env=subprocess_env, cwd=tmp_path
    )
    assert code == 0
    # The promise is "bounded by parallel x part size" (10 MiB here; the blocks streamed
    # from disk actually need far less): holding the file would add 48 MiB.
    assert peak - baseline < 20 * MIB, (peak, baseline)
