"""10. Live streams: how many browsers' live-status streams one events process holds, and how
fast a status change reaches every one of a user's streams while they are open.

An events process of the section's own (`events-streams`: the main stack's Redis and store,
no queue, reconciling once an hour, so that only the streams load it; WATCH_MAX_STREAMS and
WATCH_MAX_STREAMS_PER_USER at their defaults, 10,000 and 8) behind a gateway of the
section's own (`gateway-streams`, HTTP_MAX_CONNECTIONS raised to hold them all) serves a
load generator in a process of its own (bench/streams_load.py) that opens `config.streams`
Server-Sent-Events streams (GET /api/v2/events, a TCP connection each, as browsers hold
them), 8 per user (the per-user cap: no need to raise it), then publishes
`config.stream_changes` status changes on Redis, as the upload coordinator does, one per
user in turn, 10 ms apart. The gateway relays them all over one SubscribeFileEvents call.
Rows per round: the time to open every stream (each live: its `: live` preamble), the
events process's and the gateway's resident memory with all of them open, and the p50 and
p99 over changes of the time from PUBLISH to the change's arrival on the last of its
user's streams (one clock: the load generator's). The peak RSS of each process over every
round is a row of its own. Then, once, for comparison: the same streams as WatchFileEvents
calls straight to a fresh events process (a gRPC call per stream, over
`config.stream_connections` connections), its RSS and p99."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .config import BenchConfig
from .stack import ROOT, BenchStack, vm_hwm_bytes
from .stats import Results, Row, percentile

NAME = "events-streams"
GATEWAY = "gateway-streams"
DIRECT = "events-streams-direct"
# Connections the section's gateway takes beyond the streams (HTTP_MAX_CONNECTIONS).
GATEWAY_SPARE_CONNECTIONS = 500
PER_USER = 8  # WATCH_MAX_STREAMS_PER_USER's default
SECTION = "Live streams"


def vm_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _read_event(load: subprocess.Popen, expected: str) -> dict:
    assert load.stdout is not None
    line = load.stdout.readline()
    if not line:
        raise RuntimeError(f"the streams load generator ended (exit {load.wait()})")
    event = json.loads(line)
    if event.get("event") != expected:
        raise RuntimeError(f"unexpected from the load generator: {line.strip()}")
    return event


def _load(args: list[str], n: int, sample) -> tuple[dict, dict]:
    """Runs the load generator once: its `open` and `done` reports. `sample()` is called
    while every stream is open, before any change is published."""
    load = subprocess.Popen(
        [sys.executable, "-m", "bench.streams_load", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = _read_event(load, "open")
        if ready["live"] != n:
            raise RuntimeError(f"only {ready['live']} of {n} streams opened: {ready}")
        sample()
        assert load.stdin is not None
        load.stdin.write("go\n")
        load.stdin.flush()
        done = _read_event(load, "done")
        if done["missing"] or done["errors"]:
            raise RuntimeError(f"changes or streams lost: {done}")
        load.stdin.write("stop\n")
        load.stdin.flush()
        load.wait(60)
        return ready, done
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()


def measure(stack: BenchStack, config: BenchConfig, results: Results, say) -> None:
    n = config.streams

    def row(key: str, text: str, unit: str) -> Row:
        return results.add(Row(f"streams.{key}", SECTION, text, unit))

    opened = row("open", f"open {n:,} SSE streams through a gateway, all live", "s")
    held = row("rss", f"events process RSS holding {n:,} streams", "MB")
    gateway_held = row("gateway_rss", f"gateway RSS holding {n:,} SSE streams", "MB")
    peak = row("peak_rss", f"events process peak RSS, {n:,} streams", "MB")
    gateway_peak = row("gateway_peak_rss", f"gateway peak RSS, {n:,} SSE streams", "MB")
    p50 = row("fanout.p50", "status change → all of a user's streams: p50", "ms")
    p99 = row("fanout.p99", "status change → all of a user's streams: p99", "ms")
    direct_held = row("direct.rss", f"events RSS, {n:,} direct WatchFileEvents calls", "MB")
    direct_p99 = row("direct.fanout.p99", "the same, direct WatchFileEvents: p99", "ms")
    assert stack.state_folder is not None
    key = stack.state_folder / "keys" / "jwt-private.pem"
    common = [
        "--key",
        str(key),
        "--redis",
        stack.main_env["CLOUD_RD_URI"],
        "--streams",
        str(n),
        "--per-user",
        str(PER_USER),
        "--changes",
        str(config.stream_changes),
    ]
    # Through a gateway, as browsers hold them: n SSE connections, one SubscribeFileEvents
    # call between the gateway and its events process.
    address = stack.start_events_replica(NAME, {"RECONCILE_INTERVAL_SECONDS": "3600"})
    events = next(p for p in stack.processes if p.name == NAME)
    try:
        url = stack.start_gateway(
            GATEWAY, address, {"HTTP_MAX_CONNECTIONS": str(n + GATEWAY_SPARE_CONNECTIONS)}
        )
        gateway = next(p for p in stack.processes if p.name == GATEWAY)
        for round_number in range(config.rounds):
            stack.check_alive()

            def sample() -> None:
                held.samples.append(vm_rss_bytes(events.popen.pid) / 1e6)
                gateway_held.samples.append(vm_rss_bytes(gateway.popen.pid) / 1e6)

            ready, done = _load(["--gateway", url, *common], n, sample)
            opened.samples.append(ready["seconds"])
            p50.samples.append(percentile(done["changes_ms"], 50))
            p99.samples.append(percentile(done["changes_ms"], 99))
            say(
                f"  round {round_number + 1}: {n:,} SSE streams open in "
                f"{opened.samples[-1]:.1f} s, events RSS {held.samples[-1]:.0f} MB, gateway "
                f"RSS {gateway_held.samples[-1]:.0f} MB, change → all of a user's streams "
                f"p50 {p50.samples[-1]:.1f} ms p99 {p99.samples[-1]:.1f} ms"
            )
        peak.samples.append(vm_hwm_bytes(events.popen.pid) / 1e6)
        gateway_peak.samples.append(vm_hwm_bytes(gateway.popen.pid) / 1e6)
    finally:
        stack.stop_process(GATEWAY)
        stack.stop_process(NAME)
    # For comparison, once: a WatchFileEvents call per stream, straight to a fresh events
    # process (what each SSE client cost before the gateway shared one call).
    address = stack.start_events_replica(DIRECT, {"RECONCILE_INTERVAL_SECONDS": "3600"})
    direct = next(p for p in stack.processes if p.name == DIRECT)
    try:
        args = ["--target", address, "--connections", str(config.stream_connections), *common]
        _, done = _load(
            args, n, lambda: direct_held.samples.append(vm_rss_bytes(direct.popen.pid) / 1e6)
        )
        direct_p99.samples.append(percentile(done["changes_ms"], 99))
        say(
            f"  direct WatchFileEvents: events RSS {direct_held.samples[-1]:.0f} MB, "
            f"p99 {direct_p99.samples[-1]:.1f} ms"
        )
    finally:
        stack.stop_process(DIRECT)
