"""3. Initiation: v1 get-upload-urls (one presigned URL per 5 MiB part) for a 1 GiB file
(205 URLs) and for the largest v1 file, 10,000 parts (~48.8 GiB, 10,000 URLs); and v2
initiation of a 5 TiB file with its first batch of URLs, where the v2 API exists.
Each initiation is timed from the first request to the last byte of the last reply, then
aborted. The section signs up an account of its own, so that other sections' uploads in
progress do not count against its quota."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid

import httpx

from .api import abort, api_client, initiate, sign_up
from .config import BenchConfig
from .stack import BenchStack
from .stats import Results, Row, percentile

GIB = 1024**3
TIB = 1024 * GIB
V2_SIZE = 5 * TIB
# The v2 API: create the upload (the server chooses the part size), then ask for URLs in
# batches (each part's checksum given, as storage verifies it). The bench's first batch:
V2_FIRST_BATCH = 100
V2_CREATE = "/api/v2/files"
NO_V2 = "n/a (no v2 API)"


def v2_exists(client: httpx.Client) -> bool:
    paths = client.get("/openapi.json").raise_for_status().json().get("paths", {})
    return "post" in paths.get(V2_CREATE, {}) and "post" in paths.get(
        V2_CREATE + "/{file_id}/part-urls", {}
    )


def size_of(label: str, parts: int) -> int:
    """The 1 GiB row is exactly 1 GiB (205 parts, the last one short); the others are
    whole parts."""
    return GIB if label == "1 GiB" else parts * 5 * 1024 * 1024


def _fake_checksums(algorithm: str, count: int) -> list[str]:
    """Well-formed part checksums (base64 digests) for URLs that will never be used."""
    digest = hashlib.sha256 if algorithm == "SHA256" else None
    return [
        base64.b64encode(
            digest(str(n).encode()).digest() if digest else n.to_bytes(4, "big")
        ).decode()
        for n in range(1, count + 1)
    ]


def initiate_v2(client: httpx.Client) -> tuple[str, str, int]:
    """Creates a 5 TiB upload and asks for its first batch of URLs; (file id, upload id,
    URLs received)."""
    created = client.post(
        V2_CREATE,
        json={
            "fileId": str(uuid.uuid4()),
            "fileName": "bench-5tib.bin",
            "mimeType": "application/octet-stream",
            "size": V2_SIZE,
        },
    )
    created.raise_for_status()
    upload = created.json()
    last = min(V2_FIRST_BATCH, upload["partCount"])
    urls = client.post(
        f"{V2_CREATE}/{upload['fileId']}/part-urls",
        json={
            "first_part": 1,
            "last_part": last,
            "checksums": _fake_checksums(upload["checksumAlgorithm"], last),
        },
    )
    urls.raise_for_status()
    return upload["fileId"], upload["uploadId"], len(urls.json()["parts"])


def measure(stack: BenchStack, config: BenchConfig, results: Results, say) -> None:
    rows = {}
    for label, parts, _ in config.initiations:
        key = f"init.v1.{parts}"
        rows[key] = (
            results.add(
                Row(
                    f"{key}.p50",
                    "Initiation",
                    f"v1 get-upload-urls, {label} ({parts:,} URLs): p50",
                    "ms",
                )
            ),
            results.add(
                Row(
                    f"{key}.p99",
                    "Initiation",
                    f"v1 get-upload-urls, {label} ({parts:,} URLs): p99",
                    "ms",
                )
            ),
        )
    v2 = (
        results.add(
            Row(
                "init.v2.5tib.p50",
                "Initiation",
                f"v2 create, 5 TiB + first {V2_FIRST_BATCH} URLs: p50",
                "ms",
            )
        ),
        results.add(
            Row(
                "init.v2.5tib.p99",
                "Initiation",
                f"v2 create, 5 TiB + first {V2_FIRST_BATCH} URLs: p99",
                "ms",
            )
        ),
    )
    account = sign_up(stack.endpoints.gateway, "bench-initiation")
    with api_client(stack.endpoints.gateway, account) as client:
        has_v2 = v2_exists(client)
        if not has_v2:
            for row in v2:
                row.unavailable = NO_V2
        for round_number in range(config.rounds):
            for label, parts, count in config.initiations:
                timings = []
                for _ in range(count):
                    started = time.perf_counter()
                    file_id, reply = initiate(client, size_of(label, parts))
                    timings.append((time.perf_counter() - started) * 1000)
                    if len(reply["presignedUrls"]) != parts:
                        raise RuntimeError(
                            f"{label}: {len(reply['presignedUrls'])} URLs, expected {parts}"
                        )
                    abort(client, file_id, reply["uploadId"])
                p50, p99 = rows[f"init.v1.{parts}"]
                p50.samples.append(percentile(timings, 50))
                p99.samples.append(percentile(timings, 99))
                say(
                    f"  round {round_number + 1}: {label} ({parts} URLs) "
                    f"p50 {p50.samples[-1]:.0f} ms"
                )
            if has_v2:
                timings = []
                for _ in range(config.initiations[0][2]):
                    started = time.perf_counter()
                    file_id, upload_id, received = initiate_v2(client)
                    timings.append((time.perf_counter() - started) * 1000)
                    if received != V2_FIRST_BATCH:
                        raise RuntimeError(f"v2: {received} URLs, expected {V2_FIRST_BATCH}")
                    abort(client, file_id, upload_id)
                v2[0].samples.append(percentile(timings, 50))
                v2[1].samples.append(percentile(timings, 99))
                say(
                    f"  round {round_number + 1}: v2 5 TiB + {V2_FIRST_BATCH} URLs "
                    f"p50 {v2[0].samples[-1]:.0f} ms"
                )
