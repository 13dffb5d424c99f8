"""2. Control plane: record-chunk at concurrency 32 and one at a time, (a) through the
gateway over HTTP, (b) straight to the upload coordinator over gRPC, (c) against the floor
of one REST-to-gRPC hop (bench/floor.py), each driven by the load generator process."""

from __future__ import annotations

from .api import (
    PART_SIZE,
    Account,
    api_client,
    http_workload,
    initiate,
    raw_post,
    record_chunk_bodies,
    run_load,
)
from .config import BenchConfig
from .floor import PATH as FLOOR_PATH
from .stack import BenchStack
from .stats import Results, Row

# Files the load is spread over (several uploads in progress, as on a busy server).
FILES = 8
PARTS = 205
MODES = (
    ("gateway", "a. gateway, HTTP"),
    ("grpc", "b. upload coordinator, gRPC"),
    ("floor", "c. floor: bare FastAPI + one gRPC call"),
)


def prepare(stack: BenchStack, account: Account) -> tuple[dict[str, list], list[str]]:
    """Uploads to record parts of, and the requests of each mode."""
    with api_client(stack.endpoints.gateway, account) as client:
        file_ids = [initiate(client, PARTS * PART_SIZE)[0] for _ in range(FILES)]
    bodies = record_chunk_bodies(file_ids, PARTS)
    cookie = f"access_token={account.access_token}"
    e = stack.endpoints
    requests = {
        "gateway": [
            raw_post(e.gateway, "/api/files/record-chunk", b, cookie=cookie) for b in bodies
        ],
        "floor": [raw_post(e.floor_http, FLOOR_PATH, b, cookie=cookie) for b in bodies],
        "grpc": [
            {
                "file_id": b["file_id"],
                "chunk_index": b["chunk_index"],
                "size": int(b["size"]),
                "etag": b["etag"],
            }
            for b in bodies
        ],
    }
    return requests, file_ids


def workload(
    stack: BenchStack,
    account: Account,
    mode: str,
    requests: list,
    *,
    concurrency: int,
    duration: float,
    warmup: float,
) -> dict:
    e = stack.endpoints
    if mode == "grpc":
        return {
            "name": mode,
            "kind": "grpc-record-part",
            "target": e.upload_grpc,
            "metadata": [["authorization", f"Bearer {account.access_token}"]],
            "requests": requests,
            "concurrency": concurrency,
            "duration": duration,
            "warmup": warmup,
        }
    url = e.gateway if mode == "gateway" else e.floor_http
    return http_workload(
        mode, url, requests, concurrency=concurrency, duration=duration, warmup=warmup
    )


def measure(
    stack: BenchStack, config: BenchConfig, account: Account, results: Results, say
) -> None:
    requests, _ = prepare(stack, account)
    c = config.load_concurrency
    rows = {}
    for mode, label in MODES:
        rows[mode] = {
            "rate": results.add(
                Row(
                    f"control.{mode}.rate",
                    "Control plane",
                    f"{label}: record-chunk at concurrency {c}",
                    "calls/s",
                )
            ),
            "p50": results.add(
                Row(
                    f"control.{mode}.p50", "Control plane", f"{label}: p50 at concurrency {c}", "ms"
                )
            ),
            "p99": results.add(
                Row(
                    f"control.{mode}.p99", "Control plane", f"{label}: p99 at concurrency {c}", "ms"
                )
            ),
            "serial": results.add(
                Row(
                    f"control.{mode}.serial_p50",
                    "Control plane",
                    f"{label}: p50 one at a time",
                    "ms",
                )
            ),
        }
    for round_number in range(config.rounds):
        for concurrency, seconds, keys in (
            (c, config.load_seconds, ("rate", "p50", "p99")),
            (1, config.serial_seconds, ("serial",)),
        ):
            for mode, _ in MODES:
                stack.check_alive()
                load = workload(
                    stack,
                    account,
                    mode,
                    requests[mode],
                    concurrency=concurrency,
                    duration=seconds,
                    warmup=config.warmup_seconds,
                )
                before = stack.cpu_seconds()
                outcome = run_load([load], timeout=seconds + 120)[mode]
                check_errors(mode, outcome)
                if concurrency > 1:
                    rows[mode]["rate"].details.append(
                        cpu_per_call(before, stack.cpu_seconds(), outcome)
                    )
                values = {
                    "rate": outcome["rate"],
                    "p50": outcome["p50_ms"],
                    "p99": outcome["p99_ms"],
                    "serial": outcome["p50_ms"],
                }
                for key in keys:
                    rows[mode][key].samples.append(values[key])
        say(
            f"  round {round_number + 1}: "
            + ", ".join(
                f"{mode} {rows[mode]['rate'].samples[-1]:.0f}/s "
                f"p99 {rows[mode]['p99'].samples[-1]:.1f} ms "
                f"(one at a time p50 {rows[mode]['serial'].samples[-1]:.2f} ms)"
                for mode, _ in MODES
            )
        )


def cpu_per_call(before: dict[str, float], after: dict[str, float], outcome: dict) -> dict:
    """Milliseconds of CPU each process spent per call during a load (all of its calls,
    warm-up included)."""
    calls = max(outcome["total"], 1)
    spent = {name: after[name] - before.get(name, 0.0) for name in after}
    return {
        "cpu_ms_per_call": {
            name: round(seconds * 1000 / calls, 3)
            for name, seconds in spent.items()
            if seconds >= 0.01
        }
    }


def check_errors(name: str, outcome: dict) -> None:
    """A few failed calls are noted; more than 1 % (or no success at all) stops the bench."""
    if outcome["count"] == 0 or outcome["errors"] > 0.01 * outcome["count"]:
        raise RuntimeError(
            f"{name}: {outcome['errors']} errors in {outcome['count']} calls "
            f"(first: {outcome['first_error']})"
        )
