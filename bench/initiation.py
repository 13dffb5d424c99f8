"""3. Initiation: v1 get-upload-urls (one presigned URL per 5 MiB part) for a 1 GiB file
(205 URLs) and for the largest v1 file, 10,000 parts (~48.8 GiB, 10,000 URLs); and v2
initiation of a 5 TiB file with its first batch of URLs, once `POST /api/v2/uploads` exists.
Each initiation is timed from request to the last byte of the reply, then aborted."""
from __future__ import annotations

import time

import httpx

from .api import Account, PART_SIZE, abort, api_client, initiate
from .config import BenchConfig
from .stack import BenchStack
from .stats import Results, Row, percentile

GIB = 1024 ** 3
V2_PATH = "/api/v2/uploads"
NO_V2 = "n/a (no v2 API)"


def v2_exists(client: httpx.Client) -> bool:
    paths = client.get("/openapi.json").raise_for_status().json().get("paths", {})
    return "post" in paths.get(V2_PATH, {})


def size_of(label: str, parts: int) -> int:
    """The 1 GiB row is exactly 1 GiB (205 parts, the last one short); the others are
    whole parts."""
    return GIB if label == "1 GiB" else parts * PART_SIZE


def measure(stack: BenchStack, config: BenchConfig, account: Account, results: Results,
            say) -> None:
    rows = {}
    for label, parts, _ in config.initiations:
        key = f"init.v1.{parts}"
        rows[key] = (
            results.add(Row(f"{key}.p50", "Initiation",
                            f"v1 get-upload-urls, {label} ({parts:,} URLs): p50", "ms")),
            results.add(Row(f"{key}.p99", "Initiation",
                            f"v1 get-upload-urls, {label} ({parts:,} URLs): p99", "ms")))
    v2 = (results.add(Row("init.v2.5tib.p50", "Initiation",
                          "v2 initiation, 5 TiB + first batch of URLs: p50", "ms")),
          results.add(Row("init.v2.5tib.p99", "Initiation",
                          "v2 initiation, 5 TiB + first batch of URLs: p99", "ms")))
    with api_client(stack.endpoints.gateway, account) as client:
        for round_number in range(config.rounds):
            for label, parts, count in config.initiations:
                timings = []
                for _ in range(count):
                    started = time.perf_counter()
                    file_id, reply = initiate(client, size_of(label, parts))
                    timings.append((time.perf_counter() - started) * 1000)
                    if len(reply["presignedUrls"]) != parts:
                        raise RuntimeError(f"{label}: {len(reply['presignedUrls'])} URLs, "
                                           f"expected {parts}")
                    abort(client, file_id, reply["uploadId"])
                p50, p99 = rows[f"init.v1.{parts}"]
                p50.samples.append(percentile(timings, 50))
                p99.samples.append(percentile(timings, 99))
                say(f"  round {round_number + 1}: {label} ({parts} URLs) "
                    f"p50 {p50.samples[-1]:.0f} ms")
        if v2_exists(client):
            # The v2 API is designed in another issue; its request is not known here yet.
            note = "POST /api/v2/uploads exists: teach bench/initiation.py its request"
            for row in v2:
                row.unavailable = "n/a (v2 request not wired into the bench)"
                row.note = note
        else:
            for row in v2:
                row.unavailable = NO_V2
