"""The load generator, run as its own process (`python -m bench.loadgen < spec.json`) so it
never shares a GIL with the servers it measures. It prints one JSON object: per workload,
the requests completed inside the measured window, errors, rate and latency percentiles.

A spec holds one or more workloads, run at the same time (a sign-in storm and a
record-chunk probe beside it, for instance). Each workload is a closed loop of
`concurrency` workers, each on its own connection, sending its requests in turn:
- kind "http": raw HTTP/1.1 requests (prepared by the caller, sent byte for byte) on
  keep-alive connections; a response is read by its Content-Length. Any status other than
  `expect_status` counts as an error.
- kind "grpc-record-part": UploadService.RecordPart calls on one grpc.aio channel (as the
  gateway holds one channel to the upload service), with the given metadata.
Requests completing in the first `warmup` seconds are not counted; then `duration`
seconds are measured. With `rate` (requests per second per worker), an HTTP worker paces
itself instead of sending back to back: a probe that measures latency beside another load
without taking much CPU from it."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    # Successful calls over the whole run, warm-up included.
    total: int = 0
    errors: int = 0
    first_error: str | None = None
    statuses: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = what[:500]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def summary(tally: Tally, seconds: float) -> dict:
    values = sorted(tally.latencies)
    count = len(values)
    return {
        "count": count,
        "total": tally.total,
        "errors": tally.errors,
        "first_error": tally.first_error,
        "seconds": seconds,
        "rate": count / seconds if seconds > 0 else 0.0,
        "p50_ms": percentile(values, 50) * 1000,
        "p99_ms": percentile(values, 99) * 1000,
        "mean_ms": (sum(values) / count * 1000) if count else float("nan"),
        "max_ms": values[-1] * 1000 if values else float("nan"),
        "statuses": tally.statuses,
    }


class Window:
    def __init__(self, warmup: float, duration: float) -> None:
        now = time.perf_counter()
        self.opens = now + warmup
        self.closes = self.opens + duration

    def record(self, tally: Tally, started: float, ended: float) -> None:
        tally.total += 1
        if self.opens <= ended <= self.closes:
            tally.latencies.append(ended - started)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close = None, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and value.strip().lower() == "close":
            close = True
        elif name == "transfer-encoding":
            raise ValueError("chunked responses are not supported")
    if length is None:
        raise ValueError("response without Content-Length")
    await reader.readexactly(length)
    return status, close


async def http_worker(spec: dict, index: int, window: Window, tally: Tally) -> None:
    requests = [r.encode("latin-1") for r in spec["requests"]]
    expect = int(spec.get("expect_status", 200))
    pause = 1 / spec["rate"] if spec.get("rate") else 0.0
    position = index
    reader = writer = None
    next_start = time.perf_counter()
    while time.perf_counter() < window.closes:
        if pause:  # start on schedule; when late, start now (no catching up in a burst)
            now = time.perf_counter()
            if next_start > now:
                await asyncio.sleep(next_start - now)
            else:
                next_start = now
            next_start += pause
        request = requests[position % len(requests)]
        position += spec["concurrency"]
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(spec["host"], spec["port"])
            started = time.perf_counter()
            writer.write(request)
            status, close = await _read_response(reader)
            ended = time.perf_counter()
            tally.statuses[str(status)] = tally.statuses.get(str(status), 0) + 1
            if status == expect:
                window.record(tally, started, ended)
            elif window.opens <= ended:
                tally.error(f"HTTP {status}")
            if close:
                writer.close()
                reader = writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            tally.error(f"{type(exc).__name__}: {exc}")
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def grpc_record_part_workers(spec: dict, window: Window, tally: Tally) -> None:
    import grpc

    from dropfile.upload.v1 import upload_pb2, upload_pb2_grpc

    requests = [upload_pb2.RecordPartRequest(**r) for r in spec["requests"]]
    metadata = tuple(tuple(pair) for pair in spec["metadata"])
    async with grpc.aio.insecure_channel(spec["target"]) as channel:
        stub = upload_pb2_grpc.UploadServiceStub(channel)

        async def worker(index: int) -> None:
            position = index
            while time.perf_counter() < window.closes:
                request = requests[position % len(requests)]
                position += spec["concurrency"]
                started = time.perf_counter()
                try:
                    await stub.RecordPart(request, metadata=metadata, timeout=30)
                except grpc.aio.AioRpcError as exc:
                    if window.opens <= time.perf_counter():
                        tally.error(f"{exc.code().name}: {exc.details()}")
                    continue
                window.record(tally, started, time.perf_counter())

        await asyncio.gather(*(worker(i) for i in range(spec["concurrency"])))


async def run(spec: dict) -> dict:
    jobs, results = [], {}
    for workload in spec["workloads"]:
        window = Window(workload.get("warmup", 0.0), workload["duration"])
        tally = Tally()
        if workload["kind"] == "http":
            jobs += [
                http_worker(workload, i, window, tally) for i in range(workload["concurrency"])
            ]
        elif workload["kind"] == "grpc-record-part":
            jobs.append(grpc_record_part_workers(workload, window, tally))
        else:
            raise ValueError(f"unknown workload kind {workload['kind']!r}")
        results[workload["name"]] = (tally, workload["duration"])
    await asyncio.gather(*jobs)
    return {name: summary(tally, seconds) for name, (tally, seconds) in results.items()}


def main() -> None:
    import uvloop

    spec = json.load(sys.stdin)
    print(json.dumps(uvloop.run(run(spec))))


if __name__ == "__main__":
    main()
