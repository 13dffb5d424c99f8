"""What the chaos suite does to the stack: uploads through the SDK that keep going while
faults are caused one after the other, S3 events sent duplicated, shuffled, stale and late,
and the table of what each fault cost."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from dropfile_client import DropfileClient

MIB = 1024 * 1024
PASSWORD = "chaos monkey battery"


@dataclass(frozen=True)
class Profile:
    name: str
    uploads: int  # concurrent uploads
    max_size: int  # the largest file; the others spread from 0 B up to it
    pause: float  # seconds between two faults


SHORT = Profile("short", uploads=8, max_size=24 * MIB, pause=1.5)
FULL = Profile("full", uploads=20, max_size=200 * MIB, pause=4.0)


def file_sizes(profile: Profile) -> list[int]:
    """0 B, a few bytes, around the 5 MiB part boundary, up to the largest."""
    sizes = [0, 1, 5 * MIB - 1, 5 * MIB + 1]
    n = profile.uploads - len(sizes)
    sizes += [int(profile.max_size * ((i + 1) / n) ** 1.5) + i for i in range(n)]
    return sizes[: profile.uploads]


def make_files(folder: Path, sizes: list[int]) -> list[tuple[Path, str]]:
    """Files of random bytes, with their SHA-256."""
    made = []
    rng = random.Random(11)
    for index, size in enumerate(sizes):
        path = folder / f"f{index:02d}-{size}.bin"
        digest = hashlib.sha256()
        with open(path, "wb") as handle:
            left = size
            while left:
                block = rng.randbytes(min(left, 4 * MIB))
                handle.write(block)
                digest.update(block)
                left -= len(block)
        made.append((path, digest.hexdigest()))
    return made


@dataclass
class Outcome:
    worker: int
    path: Path
    sha256: str
    file_id: str | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class Workload:
    """`uploads` workers, each uploading its file again and again (a new file each time)
    until told to stop; every upload must end UPLOADED."""

    gateway_url: str
    folder: Path
    files: list[tuple[Path, str]]
    users: list[str]
    outcomes: list[Outcome] = field(default_factory=list)
    in_flight: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def client(self, worker: int) -> DropfileClient:
        session = self.folder / f"worker-{worker}" / "session.json"
        session.parent.mkdir(exist_ok=True)
        return DropfileClient(self.gateway_url, session_file=session)

    def sign_up_users(self) -> None:
        for index, email in enumerate(self.users):
            with self.client(1000 + index) as client:
                client.signup(email, PASSWORD, f"Chaos {index}")

    def start(self) -> None:
        """Signs every worker in (before any fault), then starts them."""
        clients = []
        for worker in range(len(self.files)):
            client = self.client(worker)
            client.login(self.users[worker % len(self.users)], PASSWORD)
            clients.append(client)
        for worker, ((path, digest), client) in enumerate(zip(self.files, clients)):
            thread = threading.Thread(
                target=self._run,
                args=(worker, client, path, digest),
                name=f"upload-{worker}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop_and_wait(self, timeout: float) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise AssertionError(f"uploads still running after {timeout:.0f} s: {alive}")

    def _run(self, worker: int, client: DropfileClient, path: Path, digest: str) -> None:
        with client:
            while not self._stop.is_set():
                outcome = Outcome(worker, path, digest)
                started = time.monotonic()
                with self._lock:
                    self.in_flight += 1
                try:
                    info = client.upload(
                        path,
                        name=f"{path.stem}-{uuid.uuid4().hex[:6]}.bin",
                        wait=True,
                        wait_timeout=300,
                    )
                    outcome.file_id = info.file_id
                    if info.size != path.stat().st_size:
                        outcome.error = f"size {info.size} != {path.stat().st_size}"
                except Exception as exc:  # noqa: BLE001 - every failure is a finding
                    outcome.error = f"{type(exc).__name__}: {exc}"
                finally:
                    outcome.seconds = time.monotonic() - started
                    with self._lock:
                        self.in_flight -= 1
                        self.outcomes.append(outcome)
                if outcome.error:
                    return  # one failure fails the suite; no need to pile up more


@dataclass
class FaultRecord:
    fault: str
    at: float  # seconds since the workload started
    outage: float  # seconds the part was unavailable (restart to ready)
    in_flight: int  # uploads running when it struck


def format_table(
    records: list[FaultRecord], outcomes: list[Outcome], proxy_counts, extra: dict[str, str]
) -> str:
    lines = [f"{'fault':<44} {'at (s)':>7} {'outage (s)':>11} {'uploads in flight':>18}", "-" * 83]
    for record in records:
        lines.append(
            f"{record.fault:<44} {record.at:>7.1f} {record.outage:>11.1f} {record.in_flight:>18}"
        )
    ok = [o for o in outcomes if not o.error]
    lines += [
        "-" * 83,
        f"uploads finished: {len(ok)} of {len(outcomes)}; failed: "
        f"{len(outcomes) - len(ok)}; bytes uploaded: "
        f"{sum(o.path.stat().st_size for o in ok) / MIB:.0f} MiB",
        f"storage proxy: {proxy_counts.forwarded} forwarded, {proxy_counts.refused} "
        f"answered 503 SlowDown, {proxy_counts.dropped} connections dropped",
    ]
    lines += [f"{key}: {value}" for key, value in extra.items()]
    return "\n".join(lines)


def object_created_event(
    bucket: str,
    key: str,
    size: int,
    etag: str,
    sequencer: str,
    *,
    event_time: str = "2026-12-07T00:00:00.000Z",
) -> dict:
    """One S3 ObjectCreated record, as S3 writes it to SQS."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": event_time,
        "eventName": "ObjectCreated:CompleteMultipartUpload",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": key, "size": size, "eTag": etag.strip('"'), "sequencer": sequencer},
        },
    }


def send_events(sqs, queue_url: str, records: list[dict]) -> int:
    """Each record in a message of its own, in the order given; returns how many."""
    for record in records:
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"Records": [record]}))
    return len(records)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(4 * MIB):
            digest.update(block)
    return digest.hexdigest()


def cleanup(folder: Path) -> None:
    for path in folder.glob("*.bin"):
        os.unlink(path)
