"""7. Load without loss: many uploads at once through the gateway, every one of which must
end UPLOADED (any error fails the bench).

- Small: `load_small_uploads` single-part uploads of 1 KiB at once (v1, as the browser client
  does: initiate, PUT, record, complete), spread over four accounts.
- Large: `load_large_uploads` uploads of `load_large_size` at once through the SDK (v2,
  four parts in flight each).
Figures: files per second (all files over the wall time from the first start to the last
UPLOADED) and the p99 of one file's time from its first request to UPLOADED being
visible through the API. The main stack: SeaweedFS, confirmed by the reconciler."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from .api import api_client, initiate, sign_up
from .config import BenchConfig
from .stack import BenchStack
from .stats import Results, Row, percentile

SMALL = 1024
POLL_SECONDS = 0.05
ACCOUNTS = 4


class LoadError(RuntimeError):
    pass


def _wait_uploaded(client: httpx.Client, file_id: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = client.get(f"/api/v2/files/{file_id}")
        if reply.status_code == 200 and reply.json()["file"]["status"] == "UPLOADED":
            return
        if reply.status_code not in (200, 503):
            raise LoadError(f"file {file_id}: HTTP {reply.status_code} {reply.text[:200]}")
        time.sleep(POLL_SECONDS)
    raise LoadError(f"file {file_id} was not UPLOADED within {timeout:.0f} s")


def _small_upload(gateway: str, account) -> float:
    """One 1 KiB upload to UPLOADED; returns its seconds."""
    started = time.monotonic()
    with api_client(gateway, account) as client, httpx.Client(timeout=120) as storage:
        file_id, reply = initiate(client, SMALL, name=f"load-{uuid.uuid4().hex[:8]}.bin")
        put = storage.put(reply["presignedUrls"][0], content=os.urandom(SMALL))
        if put.status_code != 200:
            raise LoadError(f"storage refused a part: {put.status_code} {put.text[:200]}")
        etag = put.headers["ETag"]
        client.post(
            "/api/files/record-chunk",
            json={
                "file_id": file_id,
                "chunk_index": 0,
                "size": str(SMALL),
                "etag": etag.strip('"'),
            },
        ).raise_for_status()
        client.post(
            "/api/files/complete-upload",
            json={
                "uploadId": reply["uploadId"],
                "fileId": file_id,
                "parts": [{"ETag": etag, "PartNumber": 1}],
            },
        ).raise_for_status()
        _wait_uploaded(client, file_id)
    return time.monotonic() - started


def _large_upload(gateway: str, account, path: Path, folder: Path, index: int) -> float:
    from dropfile_client import DropfileClient

    started = time.monotonic()
    with DropfileClient(gateway, session_file=folder / f"session-{index}.json") as client:
        client.login(account.email, account.password)
        info = client.upload(path, name=f"load-{index}.bin", wait=True, wait_timeout=600)
        if info.size != path.stat().st_size:
            raise LoadError(f"{info.file_id}: size {info.size}")
    return time.monotonic() - started


def _run_all(jobs, workers: int) -> tuple[list[float], float, list[str]]:
    """Runs every job at once; returns each one's seconds, the wall time and the errors."""
    started = time.monotonic()
    seconds, errors = [], []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(job) for job in jobs]:
            try:
                seconds.append(future.result())
            except Exception as exc:  # noqa: BLE001 - every error is counted and reported
                errors.append(f"{type(exc).__name__}: {exc}")
    return seconds, time.monotonic() - started, errors


def measure(stack: BenchStack, config: BenchConfig, results: Results, say) -> None:
    gateway = stack.endpoints.gateway
    accounts = [sign_up(gateway, f"bench-load-{i}") for i in range(ACCOUNTS)]
    rows = {
        "small": (
            Row(
                "load.small.rate",
                "Load",
                f"{config.load_small_uploads} x 1 KiB at once: files/s",
                "files/s",
                chart="Load: files/s",
            ),
            Row(
                "load.small.p99",
                "Load",
                f"{config.load_small_uploads} x 1 KiB at once: p99 to UPLOADED",
                "ms",
                chart="Load: p99 to UPLOADED",
            ),
        ),
        "large": (
            Row(
                "load.large.rate",
                "Load",
                f"{config.load_large_uploads} x "
                f"{config.load_large_size >> 20} MiB at once: files/s",
                "files/s",
                chart="Load: files/s",
            ),
            Row(
                "load.large.p99",
                "Load",
                f"{config.load_large_uploads} x "
                f"{config.load_large_size >> 20} MiB at once: p99 to UPLOADED",
                "ms",
                chart="Load: p99 to UPLOADED",
            ),
        ),
    }
    for rate, p99 in rows.values():
        results.add(rate)
        results.add(p99)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as folder_name:
        folder = Path(folder_name)
        big = folder / "large.bin"
        with open(big, "wb") as handle:
            for _ in range(config.load_large_size // (1 << 20)):
                handle.write(os.urandom(1 << 20))
        for round_number in range(config.load_rounds):
            stack.check_alive()
            n = config.load_small_uploads
            small = [lambda i=i: _small_upload(gateway, accounts[i % ACCOUNTS]) for i in range(n)]
            m = config.load_large_uploads
            large = [
                lambda i=i, first=round_number * m: _large_upload(
                    gateway, accounts[i % ACCOUNTS], big, folder, first + i
                )
                for i in range(m)
            ]
            for kind, jobs in (("small", small), ("large", large)):
                seconds, wall, errors = _run_all(jobs, len(jobs))
                if errors:
                    raise LoadError(
                        f"{len(errors)} of {len(jobs)} {kind} uploads failed: "
                        + "; ".join(errors[:5])
                    )
                rate, p99 = rows[kind]
                rate.samples.append(len(jobs) / wall)
                p99.samples.append(percentile(seconds, 99) * 1000)
                rate.note = p99.note = "0 errors"
                say(
                    f"  round {round_number + 1}: {kind}: {len(jobs)} files, 0 errors, "
                    f"{rate.samples[-1]:.1f} files/s, p99 {p99.samples[-1]:.0f} ms"
                )
