"""10. Live streams: how many WatchFileEvents streams one events process holds, and how fast
a status change reaches every one of a user's streams while they are open.

An events process of the section's own (`events-streams`: the main stack's Redis and store,
no queue, reconciling once an hour, so that only the streams load it; WATCH_MAX_STREAMS and
WATCH_MAX_STREAMS_PER_USER at their defaults, 10,000 and 8) serves a load generator in a
process of its own (bench/streams_load.py, grpc.aio) that opens `config.streams` streams
over `config.stream_connections` connections, 8 per user (the per-user cap: no need to
raise it), then publishes `config.stream_changes` status changes on Redis, as the upload
coordinator does, one per user in turn, 10 ms apart. Rows per round: the time to open every
stream (each live: its first heartbeat), the events process's resident memory with all of
them open, and the p50 and p99 over changes of the time from PUBLISH to the change's arrival
on the last of its user's streams (one clock: the load generator's). The peak RSS of the
process over every round is a row of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .config import BenchConfig
from .stack import ROOT, BenchStack, vm_hwm_bytes
from .stats import Results, Row, percentile

NAME = "events-streams"
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


def measure(stack: BenchStack, config: BenchConfig, results: Results, say) -> None:
    n = config.streams
    opened = results.add(Row("streams.open", SECTION, f"open {n:,} streams, all live", "s"))
    held = results.add(
        Row("streams.rss", SECTION, f"events process RSS holding {n:,} streams", "MB")
    )
    peak = results.add(
        Row("streams.peak_rss", SECTION, f"events process peak RSS, {n:,} streams", "MB")
    )
    p50 = results.add(
        Row("streams.fanout.p50", SECTION, "status change → all of a user's streams: p50", "ms")
    )
    p99 = results.add(
        Row("streams.fanout.p99", SECTION, "status change → all of a user's streams: p99", "ms")
    )
    address = stack.start_events_replica(NAME, {"RECONCILE_INTERVAL_SECONDS": "3600"})
    process = next(p for p in stack.processes if p.name == NAME)
    assert stack.state_folder is not None
    key = stack.state_folder / "keys" / "jwt-private.pem"
    try:
        for round_number in range(config.rounds):
            stack.check_alive()
            load = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.streams_load",
                    "--target",
                    address,
                    "--key",
                    str(key),
                    "--redis",
                    stack.main_env["CLOUD_RD_URI"],
                    "--streams",
                    str(n),
                    "--per-user",
                    str(PER_USER),
                    "--connections",
                    str(config.stream_connections),
                    "--changes",
                    str(config.stream_changes),
                ],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                ready = _read_event(load, "open")
                if ready["live"] != n:
                    raise RuntimeError(f"only {ready['live']} of {n} streams opened: {ready}")
                opened.samples.append(ready["seconds"])
                held.samples.append(vm_rss_bytes(process.popen.pid) / 1e6)
                assert load.stdin is not None
                load.stdin.write("go\n")
                load.stdin.flush()
                done = _read_event(load, "done")
                if done["missing"] or done["errors"]:
                    raise RuntimeError(f"changes or streams lost: {done}")
                p50.samples.append(percentile(done["changes_ms"], 50))
                p99.samples.append(percentile(done["changes_ms"], 99))
                load.stdin.write("stop\n")
                load.stdin.flush()
                load.wait(60)
            finally:
                if load.poll() is None:
                    load.kill()
                    load.wait()
            say(
                f"  round {round_number + 1}: {n:,} streams open in {opened.samples[-1]:.1f} s, "
                f"RSS {held.samples[-1]:.0f} MB, change → all of a user's streams "
                f"p50 {p50.samples[-1]:.1f} ms p99 {p99.samples[-1]:.1f} ms"
            )
        peak.samples.append(vm_hwm_bytes(process.popen.pid) / 1e6)
    finally:
        stack.stop_process(NAME)
