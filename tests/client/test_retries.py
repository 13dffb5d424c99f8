"""The CLI/SDK never throws away an upload because the server had a bad moment.

Every call of an upload (create, part URLs, part PUTs, record, complete) goes through the
fault proxy, which makes it fail for real: 500, 503 with Retry-After, 429, a connection
dropped before the request reached the server, an answer lost after the server acted on
it, a stall past the client's timeout. The upload must finish byte-exact, with no abort.
Failures that outlast the retry budget leave the upload resumable (running the command
again sends only the missing parts); a server that says the upload is gone (404) ends it
without an abort, and running again starts afresh."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import psycopg2
import pytest

from dropfile_client import DropfileClient
from tests.conftest import PG_ADMIN_URL, wait_until

from .conftest import PART, file_entry, run_dropfile, uploaded_file_id, write_file

pytestmark = pytest.mark.slow

CREATE = r"^/api/v2/files$"
PART_URLS = r"^/api/v2/files/[^/]+/part-urls$"
PART_PUT = r"."  # any storage PUT (part_number narrows it to one part)
RECORD = r"^/api/v2/files/[^/]+/parts/batch$"
COMPLETE = r"^/api/v2/files/[^/]+/complete$"
ABORT = r"^/api/files/abort-upload$"
GATEWAY_CALLS = {
    "create": ("POST", CREATE),
    "part-urls": ("POST", PART_URLS),
    "record": ("POST", RECORD),
    "complete": ("POST", COMPLETE),
}
RESUME_HINT = "the upload was kept: run the same command again to resume it"


def calls_to(fault_proxy, call: str):
    """The requests of one call of the upload, in the order they arrived."""
    if call == "part-put":
        return fault_proxy.puts(2)
    return fault_proxy.calls(*GATEWAY_CALLS[call])


def add_faults(fault_proxy, call: str, *faults: dict) -> None:
    method, pattern = ("PUT", PART_PUT) if call == "part-put" else GATEWAY_CALLS[call]
    part = {"part_number": 2} if call == "part-put" else {}
    for fault in faults:
        fault_proxy.fault(method, pattern, **part, **fault)


def download(cli, file_id: str, tmp_path) -> bytes:
    target = tmp_path / f"download-{file_id}"
    cli("get", file_id, str(target)).assert_ok()
    return target.read_bytes()


def listed(cli) -> list[dict]:
    return json.loads(cli("ls", "--json").assert_ok().out)


@pytest.mark.parametrize("call", ["create", "part-urls", "part-put", "record", "complete"])
def test_each_call_of_an_upload_survives_errors_throttling_and_dropped_connections(
    cli, account, tmp_path, fault_proxy, call
):
    source = tmp_path / f"{call}.bin"
    data = write_file(source, 2 * PART + 4321)  # three parts
    add_faults(
        fault_proxy,
        call,
        {"status": 500},
        {"status": 503, "retry_after": "2"},
        {"status": 429},
        {"kind": "drop"},  # the connection closes before the request is forwarded
        {"kind": "lose-answer"},
    )  # the server acts; its answer never arrives

    result = cli("upload", str(source), "-v")

    file_id = uploaded_file_id(result)
    assert fault_proxy.faults_left() == 0, "the client gave up before every fault was met"
    attempts = calls_to(fault_proxy, call)
    assert [a.fault for a in attempts[:5]] == ["status", "status", "status", "drop", "lose-answer"]
    assert attempts[5].status in (200, 201, 409)  # 409: create's retry finds its upload
    # Retry-After: 2 was honoured (the jittered backoff alone waits at most a second).
    assert attempts[2].at - attempts[1].at >= 1.9
    assert "retrying" in result.err  # -v says what happened
    assert not fault_proxy.calls("POST", ABORT)
    assert [f["fileId"] for f in listed(cli)] == [file_id]  # one upload, not two
    assert file_entry(cli, file_id)["status"] == "UPLOADED"
    assert download(cli, file_id, tmp_path) == data


def test_calls_that_time_out_are_retried(cli, account, tmp_path, fault_proxy):
    source = tmp_path / "slow server.bin"
    data = write_file(source, 2 * PART + 1)
    for call in ("create", "part-urls", "part-put", "record", "complete"):
        add_faults(fault_proxy, call, {"kind": "stall", "stall": 2.5, "times": 2})

    with DropfileClient(session_file=cli.session_file, timeout=1.0, storage_timeout=1.0) as client:
        info = client.upload(source, wait=False)

    assert fault_proxy.faults_left() == 0
    for call in ("create", "part-urls", "part-put", "record", "complete"):
        assert [a.fault for a in calls_to(fault_proxy, call)[:2]] == ["stall", "stall"], call
    assert not fault_proxy.calls("POST", ABORT)
    assert [f["fileId"] for f in listed(cli)] == [info.file_id]
    assert download(cli, info.file_id, tmp_path) == data


def stored_parts(fault_proxy, since: int) -> set[int]:
    """Parts storage accepted (forwarded, 200) among the requests after `since`."""
    return {
        seen.part_number
        for seen in fault_proxy.seen[since:]
        if seen.method == "PUT"
        and seen.part_number is not None
        and seen.status == 200
        and not seen.injected
    }


@pytest.mark.parametrize(
    "persistent",
    [
        {"call": "part-put", "status": 500},
        {"call": "record", "status": 503, "retry_after": "1"},
    ],
)
def test_a_failure_beyond_the_budget_keeps_the_upload_and_running_again_resumes_it(
    cli, account, tmp_path, fault_proxy, config_dir, persistent
):
    source = tmp_path / "kept.bin"
    data = write_file(source, 3 * PART + 99)  # four parts
    call = persistent["call"]
    method, pattern = ("PUT", PART_PUT) if call == "part-put" else GATEWAY_CALLS[call]
    fault_proxy.fault(
        method,
        pattern,
        times=10_000,
        status=persistent["status"],
        retry_after=persistent.get("retry_after"),
        part_number=3 if call == "part-put" else None,
    )

    failed = cli(
        "upload", str(source), "--parallel", "1", "--retries", "3", "--retry-deadline", "4"
    )

    line = failed.assert_one_line_error("kept.bin: ", "still failing after", RESUME_HINT)
    assert str(persistent["status"]) in line
    assert not fault_proxy.calls("POST", ABORT)  # nothing thrown away
    records = json.loads((config_dir / "uploads.json").read_text())
    [file_id] = [entry["fileId"] for entry in records.values()]
    assert file_entry(cli, file_id)["status"] == "UPLOADING"
    first_run = stored_parts(fault_proxy, 0)
    # Part 3 never got through; or, when recording failed, every part may be stored.
    assert first_run == ({1, 2} if call == "part-put" else {1, 2, 3, 4})

    fault_proxy.allow_calls(method, pattern)
    mark = len(fault_proxy.seen)
    resumed = cli("upload", str(source), "--parallel", "1")

    assert uploaded_file_id(resumed) == file_id
    second_run = stored_parts(fault_proxy, mark)
    assert second_run == {1, 2, 3, 4} - first_run  # only the missing parts were sent
    assert [f["fileId"] for f in listed(cli)] == [file_id]
    assert download(cli, file_id, tmp_path) == data
    assert json.loads((config_dir / "uploads.json").read_text()) == {}


def test_an_upload_the_server_says_is_gone_ends_without_an_abort_and_starts_afresh(
    dropfile_bin, subprocess_env, cli, account, tmp_path, fault_proxy, config_dir
):
    source = tmp_path / "deleted meanwhile.bin"
    data = write_file(source, 2 * PART + 10)
    fault_proxy.fault("POST", RECORD, kind="hold")  # the first record waits
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
            lambda: fault_proxy.faults_left() == 0 or process.poll() is not None,
            timeout=60,
            what="a record to be on its way",
        )
        [file_id] = [
            entry["fileId"]
            for entry in json.loads((config_dir / "uploads.json").read_text()).values()
        ]
        # Deleted elsewhere meanwhile: the record that arrives then is refused 404.
        with DropfileClient(session_file=cli.session_file) as other:
            other.delete(file_id)
        fault_proxy.release()
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 1, err
    assert err == (
        "dropfile: deleted meanwhile.bin: part 1: file not found; the upload is "
        "gone from the server: uploading again starts afresh\n"
    )
    assert [c.status for c in fault_proxy.calls("POST", RECORD)] == [404]  # not retried
    assert not fault_proxy.calls("POST", ABORT)
    assert json.loads((config_dir / "uploads.json").read_text()) == {}

    again = run_dropfile(dropfile_bin, "upload", str(source), env=env)
    new_id = uploaded_file_id(again)
    assert new_id != file_id
    assert [f["fileId"] for f in listed(cli)] == [new_id]
    assert download(cli, new_id, tmp_path) == data


def test_an_upload_outlasts_an_outage_of_its_database(
    cli, account, tmp_path, fault_proxy, database_url
):
    """As a PostgreSQL restart looks to the services, for this run's own database only: it
    takes no connection and its open ones are cut, for eight seconds, while the upload is
    under way. The services answer 503 with Retry-After (or 500, as the gateway did when
    the issue was measured); the upload must wait it out, not abort."""
    source = tmp_path / "during the outage.bin"
    data = write_file(source, 6 * PART + 3)  # seven parts
    database = database_url.rsplit("/", 1)[1]
    # Part 1's PUT waits for the outage to begin, so the upload is under way when it does.
    fault_proxy.hold_part(1)
    outage_over = threading.Event()

    def outage() -> None:
        wait_until(lambda: 1 in fault_proxy.arrived, timeout=60, what="the upload to start")
        admin = psycopg2.connect(PG_ADMIN_URL, connect_timeout=5)
        admin.autocommit = True
        try:
            with admin.cursor() as cursor:
                cursor.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
                try:
                    cursor.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()",
                        (database,),
                    )
                    fault_proxy.release()
                    # Longer than a client that tries a call three times in a second or
                    # two would last (as this one did before its retry policy).
                    time.sleep(8)
                finally:
                    cursor.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        finally:
            admin.close()
            fault_proxy.release()
            outage_over.set()

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    result = cli("upload", str(source), "--parallel", "2", "-v")
    thread.join(timeout=60)

    assert outage_over.is_set()
    file_id = uploaded_file_id(result)
    refused = [s for s in fault_proxy.seen if s.status >= 500 and not s.injected]
    assert refused, "the outage never reached the client: the test proves nothing"
    assert not fault_proxy.calls("POST", ABORT)
    assert download(cli, file_id, tmp_path) == data


def test_signing_in_waits_out_a_server_too_busy_to_hash_passwords(cli, account, fault_proxy):
    """Sign-in answers 503 with Retry-After when its hashing queue is full: the CLI waits
    and signs in, instead of failing the command."""
    cli("logout").assert_ok()
    fault_proxy.fault("POST", r"^/api/auth/signin$", status=503, retry_after="1")
    fault_proxy.fault("POST", r"^/api/auth/signin$", status=503)
    cli(
        "login", "--email", account.email, "--password-stdin", stdin=account.password + "\n"
    ).assert_ok()
    assert fault_proxy.faults_left() == 0
    assert [call.status for call in fault_proxy.calls("POST", r"^/api/auth/signin$")] == [
        503,
        503,
        200,
    ]
