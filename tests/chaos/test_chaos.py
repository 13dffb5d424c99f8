"""The chaos suite: uploads through the SDK keep going while, in turn, PostgreSQL restarts,
Redis is flushed and restarted, each gRPC service and the gateway are SIGKILLed and
restarted, and S3 events arrive duplicated, shuffled, stale and late; all the while a
tenth of part PUTs and downloads fail on the way to storage.

It asserts that every upload ends UPLOADED and byte-exact without a client giving up,
that events change nothing twice, and that the audit finds storage and the database in
agreement (no orphaned multipart upload, no row without its object). It prints a table,
fault by fault.

`make test` runs the short profile (8 uploads up to 24 MiB); `make chaos` the full one
(CHAOS_PROFILE=full: 20 uploads from 0 B to 200 MiB)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid

import psycopg2
import pytest
import redis

from .stack import BUCKET, ChaosStack
from .storage_proxy import StorageFaultProxy
from .workload import (
    FULL,
    PASSWORD,
    SHORT,
    FaultRecord,
    Workload,
    file_sizes,
    format_table,
    make_files,
    object_created_event,
    send_events,
    sha256_of,
)

PROFILE = FULL if os.environ.get("CHAOS_PROFILE") == "full" else SHORT
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800 if PROFILE is FULL else 600)]


@pytest.fixture
def stack():
    proxies: list[StorageFaultProxy] = []

    def through_proxy(storage_url: str) -> str:
        proxies.append(StorageFaultProxy(storage_url, failure_rate=0.10).start())
        return proxies[0].url

    chaos = ChaosStack()
    try:
        chaos.start(public_storage_url=through_proxy)
        chaos.proxy = proxies[0]
        yield chaos
    finally:
        chaos.stop()
        for proxy in proxies:
            proxy.close()


def _rows(database_url: str, where: str = "TRUE") -> dict[str, tuple]:
    conn = psycopg2.connect(database_url, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT id::text, status::text, size, etag, s3_key, uploaded_at, "
                f"updated_at, user_id::text FROM files WHERE {where}"
            )
            return {row[0]: row[1:] for row in cur.fetchall()}
    finally:
        conn.close()


def _queue_drained(stack: ChaosStack, timeout: float) -> bool:
    sqs = stack.sqs()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attrs = sqs.get_queue_attributes(
            QueueUrl=stack.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        if (
            attrs["ApproximateNumberOfMessages"] == "0"
            and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
        ):
            return True
        time.sleep(0.5)
    return False


class EventStorm:
    """Sends every UPLOADED file's real ObjectCreated event twice, shuffled among stale
    ones (wrong size, wrong ETag, an older sequencer) and a late one for a file deleted
    since; keeps the rows as they were so the suite can check that nothing changed."""

    def __init__(self, stack: ChaosStack, workload: Workload) -> None:
        self.stack = stack
        self.workload = workload
        self.before: dict[str, tuple] = {}
        self.deleted: tuple[str, str] | None = None  # (file id, key)
        self.sent = 0

    def __call__(self) -> float:
        started = time.monotonic()
        uploaded = _rows(self.stack.database_url, "status = 'UPLOADED'")
        if len(uploaded) >= 2:
            file_id, row = next(iter(uploaded.items()))
            with self.workload.client(2000) as client:
                client.login(_email_of(self.stack, row[6]), PASSWORD)
                client.delete(file_id)
            self.deleted = (file_id, row[3])
            del uploaded[file_id]
        self.before = _rows(self.stack.database_url, "status = 'UPLOADED'")
        records = []
        rng = random.Random(5)
        for _file_id, (_, size, etag, key, *_rest) in uploaded.items():
            real = object_created_event(BUCKET, key, size, etag, f"{rng.getrandbits(64):016X}")
            records += [real, real]
            records.append(object_created_event(BUCKET, key, size + 1, etag, "0001"))
            records.append(object_created_event(BUCKET, key, size, "0" * 32, "0002"))
        if self.deleted:
            records.append(object_created_event(BUCKET, self.deleted[1], 1, "1" * 32, "FFFF"))
        rng.shuffle(records)
        self.sent = send_events(self.stack.sqs(), self.stack.queue_url, records)
        return time.monotonic() - started


def test_every_upload_survives_every_fault(stack, tmp_path):
    files = make_files(tmp_path, file_sizes(PROFILE))
    users = [f"chaos-{i}-{uuid.uuid4().hex[:8]}@example.com" for i in range(4)]
    workload = Workload(stack.gateway_url, tmp_path, files, users)
    workload.sign_up_users()
    storm = EventStorm(stack, workload)
    records: list[FaultRecord] = []
    rd = redis.Redis.from_url(stack.redis_url)
    faults = [
        (
            "PostgreSQL restarted (fast shutdown)",
            lambda: stack.restart("postgres", sig=signal.SIGINT, down_for=1.0),
        ),
        ("Redis flushed (FLUSHALL)", lambda: (rd.flushall(), 0.0)[1]),
        ("Redis SIGKILLed and restarted", lambda: stack.restart("valkey", down_for=1.0)),
        ("auth SIGKILLed and restarted", lambda: stack.restart("auth", down_for=0.5)),
        ("upload SIGKILLed and restarted", lambda: stack.restart("upload", down_for=0.5)),
        ("events SIGKILLed and restarted", lambda: stack.restart("events", down_for=0.5)),
        ("gateway SIGKILLed and restarted", lambda: stack.restart("gateway", down_for=0.5)),
        ("S3 events duplicated, shuffled, stale, late", storm),
    ]
    workload.start()
    began = time.monotonic()
    for name, cause in faults:
        time.sleep(PROFILE.pause)
        at, in_flight = time.monotonic() - began, workload.in_flight
        outage = cause()
        records.append(FaultRecord(name, at, outage, in_flight))
        stack.check_alive()
    workload.stop_and_wait(timeout=900)
    assert _queue_drained(stack, timeout=60), "the events service left S3 events unprocessed"

    failed = [f"{o.path.name}: {o.error}" for o in workload.outcomes if o.error]
    assert not failed, "uploads failed:\n" + "\n".join(failed)

    # Every file UPLOADED (none FAILED: no client gave up and no fault failed a file), and
    # byte-exact through the same failing storage proxy.
    rows = _rows(stack.database_url)
    assert {row[0] for row in rows.values()} == {"UPLOADED"}, rows
    expected = {o.file_id: o for o in workload.outcomes}
    assert set(rows) == set(expected) - {storm.deleted[0] if storm.deleted else None}
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for index, email in enumerate(users):
        with workload.client(3000 + index) as client:
            client.login(email, PASSWORD)
            for file_id, row in rows.items():
                if _email_of(stack, row[6]) != email:
                    continue
                target = downloads / file_id
                client.download(file_id, target)
                assert sha256_of(target) == expected[file_id].sha256, expected[file_id].path
                target.unlink()

    # Events changed nothing twice: the rows confirmed before the storm are as they were.
    after = _rows(stack.database_url, "status = 'UPLOADED'")
    for file_id, row in storm.before.items():
        assert after[file_id] == row, f"{file_id} changed after duplicate or stale events"
    if storm.deleted:
        assert storm.deleted[0] not in after

    # Storage and the database agree: nothing orphaned, nothing missing.
    audit = subprocess.run(
        [sys.executable, "-m", "services.audit", "--json"],
        env=stack.service_env_for("upload"),
        cwd=stack.state,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    findings = json.loads(audit.stdout)["findings"]
    assert findings == [], findings

    print(
        "\n"
        + format_table(
            records,
            workload.outcomes,
            stack.proxy.counts,
            {
                "profile": f"{PROFILE.name} ({PROFILE.uploads} concurrent uploads, 0 B to "
                f"{PROFILE.max_size // (1024 * 1024)} MiB)",
                "S3 events sent": f"{storm.sent} (each real one twice, "
                "shuffled with stale and late ones)",
                "audit findings": "0",
            },
        )
    )


_emails: dict[str, str] = {}


def _email_of(stack: ChaosStack, user_id: str) -> str:
    if user_id not in _emails:
        conn = psycopg2.connect(stack.database_url, connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT email FROM users WHERE id = %s", (user_id,))
                _emails[user_id] = cur.fetchone()[0]
        finally:
            conn.close()
    return _emails[user_id]
