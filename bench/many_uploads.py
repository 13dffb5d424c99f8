"""7. Load without loss: many uploads at once through the gateway, every one of which must
end UPLOADED (any error fails the bench).

- Small: `load_small_uploads` single-part uploads of 1 KiB at once (v1, as the browser client
  does: initiate, PUT, record, complete), spread over four accounts.
- Large: `load_large_uploads` uploads of `load_large_size` at once through the SDK (v2,
  four parts in flight each).
- Burst: `load_burst_uploads` single-part uploads of `load_burst_size` (1 MiB) at once, as
  the small ones, over enough accounts that no one passes MAX_UPLOADS_IN_PROGRESS; beside
  it, boto3's `put_object` of the same objects straight to the store at the same
  concurrency (no Dropfile at all), whose files per second it is compared with.
Figures: files per second (all files over the wall time from the first start to the last
UPLOADED) and the p99 of one file's time from its first request to UPLOADED being
visible through the API. The main stack: SeaweedFS, confirmed by the reconciler."""

from __future__ import annotations

import os
import resource
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
# MAX_UPLOADS_IN_PROGRESS's default is 100 per user: the burst spreads over more accounts.
BURST_UPLOADS_PER_ACCOUNT = 50


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


def _small_upload(gateway: str, account, size: int = SMALL) -> float:
    """One single-part upload (1 KiB by default) to UPLOADED; returns its seconds."""
    started = time.monotonic()
    with api_client(gateway, account) as client, httpx.Client(timeout=120) as storage:
        file_id, reply = initiate(client, size, name=f"load-{uuid.uuid4().hex[:8]}.bin")
        put = storage.put(reply["presignedUrls"][0], content=os.urandom(size))
        if put.status_code != 200:
            raise LoadError(f"storage refused a part: {put.status_code} {put.text[:200]}")
        etag = put.headers["ETag"]
        client.post(
            "/api/files/record-chunk",
            json={
                "file_id": file_id,
                "chunk_index": 0,
                "size": str(size),
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


def _boto3_burst(stack: BenchStack, count: int, size: int) -> float:
    """`count` put_object calls of `size` bytes at once straight to the store; returns the
    files per second. The objects are deleted afterwards."""
    import boto3
    from botocore.config import Config

    e = stack.endpoints
    s3 = boto3.session.Session().client(
        "s3",
        endpoint_url=e.s3_endpoint,
        region_name=e.region,
        aws_access_key_id=e.s3_access_key,
        aws_secret_access_key=e.s3_secret_key,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=count),
    )
    keys = [f"bench/burst/{uuid.uuid4()}" for _ in range(count)]
    bodies = [os.urandom(size) for _ in range(count)]
    jobs = [
        lambda key=key, body=body: s3.put_object(Bucket=e.s3_bucket, Key=key, Body=body)
        for key, body in zip(keys, bodies)
    ]
    _, wall, errors = _run_all(jobs, count)
    for key in keys:
        s3.delete_object(Bucket=e.s3_bucket, Key=key)
    if errors:
        raise LoadError(f"{len(errors)} of {count} put_object calls failed: {errors[:3]}")
    return count / wall


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        name: round(after[name] - before.get(name, 0.0), 2)
        for name in sorted(after, key=lambda name: before.get(name, 0.0) - after[name])
        if after[name] - before.get(name, 0.0) >= 0.05
    }


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
    burst_size = f"{config.load_burst_size >> 20} MiB"
    rows["burst"] = (
        Row(
            "load.burst.rate",
            "Load",
            f"{config.load_burst_uploads} x {burst_size} at once: files/s",
            "files/s",
            chart="Load: files/s",
        ),
        Row(
            "load.burst.p99",
            "Load",
            f"{config.load_burst_uploads} x {burst_size} at once: p99 to UPLOADED",
            "ms",
            chart="Load: p99 to UPLOADED",
        ),
    )
    for rate, p99 in rows.values():
        results.add(rate)
        results.add(p99)
    boto3_burst = results.add(
        Row(
            "load.burst.boto3.rate",
            "Load",
            f"boto3 put_object straight to the store, {config.load_burst_uploads} x "
            f"{burst_size} at once: files/s",
            "files/s",
            chart="Load: files/s",
        )
    )
    burst_accounts = [
        sign_up(gateway, f"bench-burst-{i}")
        for i in range(-(-config.load_burst_uploads // BURST_UPLOADS_PER_ACCOUNT))
    ]
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
            burst = [
                lambda i=i: _small_upload(
                    gateway, burst_accounts[i % len(burst_accounts)], config.load_burst_size
                )
                for i in range(config.load_burst_uploads)
            ]
            for kind, jobs in (("small", small), ("large", large), ("burst", burst)):
                before, own_before = stack.cpu_seconds(), _own_cpu_seconds()
                seconds, wall, errors = _run_all(jobs, len(jobs))
                used = _cpu_used(before, stack.cpu_seconds())
                used["load generator (the bench)"] = round(_own_cpu_seconds() - own_before, 2)
                if errors:
                    raise LoadError(
                        f"{len(errors)} of {len(jobs)} {kind} uploads failed: "
                        + "; ".join(errors[:5])
                    )
                rate, p99 = rows[kind]
                rate.samples.append(len(jobs) / wall)
                p99.samples.append(percentile(seconds, 99) * 1000)
                rate.note = p99.note = "0 errors"
                # What each process spent while they ran: where the files per second go.
                rate.details.append({"wall_seconds": round(wall, 2), "cpu_seconds": used})
                say(
                    f"  round {round_number + 1}: {kind}: {len(jobs)} files, 0 errors, "
                    f"{rate.samples[-1]:.1f} files/s, p99 {p99.samples[-1]:.0f} ms"
                )
            boto3_burst.samples.append(
                _boto3_burst(stack, config.load_burst_uploads, config.load_burst_size)
            )
            say(
                f"  round {round_number + 1}: boto3 put_object burst: "
                f"{boto3_burst.samples[-1]:.1f} files/s"
            )
