"""1. Upload and download throughput: Dropfile's client through the whole stack against
boto3 straight to the same store, and the original browser client's algorithm; rounds
interleaved (a, b, c, a, b, c...) so that a disturbance hits every method alike."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tools.processes import run_json_module

from .api import Account, api_client
from .config import BenchConfig
from .stack import ROOT, BenchStack
from .stats import Results, Row

MIB = 1024 * 1024
UPLOADS = (
    ("upload.dropfile", "a. Dropfile CLI/SDK, whole stack", "dropfile-upload"),
    ("upload.boto3", "b. boto3 upload_file, straight to the store", "boto3-upload"),
    ("upload.browser", "c. original browser algorithm, whole stack", "browser-upload"),
    ("upload.s5cmd", "d. s5cmd cp, straight to the store", "s5cmd-upload"),
)
DOWNLOADS = (
    ("download.dropfile", "a. Dropfile CLI/SDK", "dropfile-download"),
    ("download.boto3", "b. boto3 download_file", "boto3-download"),
)


def scratch_folder() -> Path:
    """tmpfs when the machine has it, so the local disk is not what is measured."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


@contextmanager
def random_file(size: int) -> Iterator[Path]:
    fd, name = tempfile.mkstemp(prefix="dropfile-bench-", suffix=".bin", dir=scratch_folder())
    try:
        with os.fdopen(fd, "wb") as handle:
            remaining = size
            while remaining:
                block = os.urandom(min(remaining, 16 * MIB))
                handle.write(block)
                remaining -= len(block)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def transfer(spec: dict, timeout: float = 600) -> dict:
    """Runs one transfer in its own process (bench/transfer.py)."""
    try:
        return run_json_module("bench.transfer", spec, cwd=ROOT, timeout=timeout)
    except RuntimeError as exc:
        raise RuntimeError(f"{spec['method']}: {exc}") from None


def measure(
    stack: BenchStack,
    config: BenchConfig,
    account: Account,
    results: Results,
    peaks: dict[str, int],
    say,
) -> None:
    e = stack.endpoints
    base = {
        "gateway": e.gateway,
        "email": account.email,
        "password": account.password,
        "s3_endpoint": e.s3_endpoint,
        "access_key": e.s3_access_key,
        "secret_key": e.s3_secret_key,
        "bucket": e.s3_bucket,
        "region": e.region,
        "concurrency": config.concurrency,
        "bytes": config.file_size,
    }
    api = api_client(e.gateway, account)
    # boto3 uses the part size Dropfile's server chooses for this size.
    base["part_size"] = dropfile_part_size(api, config.file_size)
    uploads = {
        row_id: results.add(Row(row_id, "Upload", name, "MiB/s")) for row_id, name, _ in UPLOADS
    }
    downloads = {
        row_id: results.add(Row(row_id, "Download", name, "MiB/s")) for row_id, name, _ in DOWNLOADS
    }
    kept: dict | None = None
    with random_file(config.file_size) as path:
        # Unmeasured: the first gigabyte a fresh store receives costs it more (SeaweedFS
        # grows its volumes), which would count against whichever method came first.
        _delete(api, stack, transfer({**base, "method": "boto3-upload", "path": str(path)}))
        for round_number in range(config.rounds):
            for row_id, _, method in UPLOADS:
                stack.check_alive()
                before = stack.cpu_seconds()
                done = transfer({**base, "method": method, "path": str(path)})
                uploads[row_id].samples.append(config.file_size / MIB / done["seconds"])
                uploads[row_id].details.append(cpu_used(before, stack.cpu_seconds(), done))
                note_peak(peaks, method, done["peak_rss_bytes"])
                say(f"  round {round_number + 1}: {method} {uploads[row_id].samples[-1]:.0f} MiB/s")
                if method == "dropfile-upload" and kept is None:
                    kept = done  # downloaded below, deleted at the end
                else:
                    _delete(api, stack, done)
    if kept is None:
        return
    wait_uploaded(api, kept["file_id"], timeout=60)
    dest = scratch_folder() / f"dropfile-bench-download-{os.getpid()}.bin"
    try:
        for round_number in range(config.rounds):
            for row_id, _, method in DOWNLOADS:
                before = stack.cpu_seconds()
                done = transfer(
                    {
                        **base,
                        "method": method,
                        "file_id": kept["file_id"],
                        "s3_key": kept["s3_key"],
                        "dest": str(dest),
                    }
                )
                downloads[row_id].details.append(cpu_used(before, stack.cpu_seconds(), done))
                if dest.stat().st_size != config.file_size:
                    raise RuntimeError(f"{method} wrote {dest.stat().st_size} bytes")
                dest.unlink()
                downloads[row_id].samples.append(config.file_size / MIB / done["seconds"])
                note_peak(peaks, method, done["peak_rss_bytes"])
                say(
                    f"  round {round_number + 1}: {method} "
                    f"{downloads[row_id].samples[-1]:.0f} MiB/s"
                )
    finally:
        dest.unlink(missing_ok=True)
        _delete(api, stack, kept)
        api.close()


def cpu_used(before: dict[str, float], after: dict[str, float], done: dict) -> dict:
    """CPU seconds each process spent on one transfer (the store is `s3`), and the
    client's own (its start-up and sign-in included)."""
    used = {
        name: round(after[name] - before.get(name, 0.0), 2)
        for name in after
        if after[name] - before.get(name, 0.0) >= 0.01
    }
    return {
        "seconds": round(done["seconds"], 3),
        "cpu_seconds": {"client": round(done["cpu_seconds"], 2), **used},
    }


def dropfile_part_size(api: httpx.Client, size: int) -> int:
    """The part size the server chooses for a file of `size` bytes: v2's when the v2 API
    exists (an upload is created to ask, then aborted), else v1's 5 MiB."""
    paths = api.get("/openapi.json").raise_for_status().json().get("paths", {})
    if "post" not in paths.get("/api/v2/files", {}):
        return 5 * MIB
    created = api.post("/api/v2/files", json={"fileName": "part-size.bin", "size": size})
    created.raise_for_status()
    reply = created.json()
    api.post(
        "/api/files/abort-upload", json={"uploadId": reply["uploadId"], "file_id": reply["fileId"]}
    ).raise_for_status()
    return int(reply["partSize"])


def note_peak(peaks: dict[str, int], method: str, value: int) -> None:
    """Keeps the peak memory of Dropfile's own client (the others are not Dropfile's)."""
    if method.startswith("dropfile-"):
        name = f"client: {method}"
        peaks[name] = max(peaks.get(name, 0), value)


def wait_uploaded(api: httpx.Client, file_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = api.get("/api/files/list")
        if reply.status_code != 503:  # a backend's moment of unavailability: ask again
            files = reply.raise_for_status().json()["files"]
            if any(f["fileId"] == file_id and f["status"] == "UPLOADED" for f in files):
                return
        time.sleep(0.1)
    raise RuntimeError(f"upload {file_id} was not confirmed within {timeout:.0f} s")


def _delete(api: httpx.Client, stack: BenchStack, done: dict) -> None:
    """Frees the store of a measured upload (through the API when Dropfile knows it)."""
    if "file_id" in done:
        # A completed upload the reconciler has not confirmed yet can still be deleted.
        api.request(
            "DELETE", "/api/files/delete", json={"file_id": done["file_id"]}
        ).raise_for_status()
        return
    import boto3

    e = stack.endpoints
    boto3.session.Session().client(
        "s3",
        endpoint_url=e.s3_endpoint,
        region_name=e.region,
        aws_access_key_id=e.s3_access_key,
        aws_secret_access_key=e.s3_secret_key,
    ).delete_object(Bucket=e.s3_bucket, Key=done["s3_key"])
