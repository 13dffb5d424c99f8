"""`python -m bench [--profile full|smoke] [--rounds N] [--out DIR]` (what `make bench` runs):
starts the bench stack (bench/stack.py), measures every section, stops everything, prints
the table and writes results.txt, results.json and results.png to the output folder
(bench/out/ by default, which git ignores)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time
from pathlib import Path

import httpx

from . import (
    browser,
    control_plane,
    event_latency,
    initiation,
    listing,
    many_uploads,
    signin,
    streams,
    transfers,
    wan,
)
from .api import api_client, sign_up
from .config import PROFILES
from .report import machine, write
from .stack import DROPFILE_PROCESSES, ROOT, BenchStack, ForeignLoad
from .stats import Results, Row

SECTIONS = (
    "upload",
    "control",
    "initiation",
    "events",
    "signin",
    "load",
    "wan",
    "browser",
    "streams",
    "listing",
)
# Above this share of the machine's CPU used by others during a section, say so.
FOREIGN_WARNING_PERCENT = 5.0


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--rounds", type=int, help="rounds per row (default: the profile's)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="measure only these sections (repeatable)"
    )
    return parser.parse_args(argv)


def memory_rows(results: Results, peaks: dict[str, int]) -> None:
    for name in (*DROPFILE_PROCESSES, *sorted(p for p in peaks if p.startswith("client:"))):
        if name in peaks:
            label = name.replace("client: ", "client process: ")
            results.add(
                Row(
                    f"memory.{name.replace('client: ', 'client.')}",
                    "Memory",
                    f"{label}: peak RSS",
                    "MB",
                    samples=[peaks[name] / 1e6],
                )
            )


def warm_up(stack: BenchStack, account) -> None:
    """One small upload through each stack, so that no measurement pays for first calls
    (botocore loads its models and endpoint rules lazily, connections open...)."""
    for gateway in (stack.endpoints.gateway, stack.endpoints.gateway_sqs):
        with api_client(gateway, account) as client, httpx.Client(timeout=60) as storage:
            file_id, _, _ = event_latency.upload_small(client, storage)
            client.request(
                "DELETE", "/api/files/delete", json={"file_id": file_id}
            ).raise_for_status()


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def write_out_page_cache() -> None:
    """Waits until the kernel has written out what earlier sections left in the page cache
    (the uploads leave GiBs): its writeback would otherwise land on the next section's
    timings, through the disk that PostgreSQL's commits wait for."""
    os.sync()


def run(argv: list[str]) -> int:
    args = parse_args(argv)
    config = PROFILES[args.profile]
    if args.rounds:
        config = dataclasses.replace(config, rounds=args.rounds)
    sections = set(args.only or SECTIONS)
    started = time.monotonic()
    meta = {
        "profile": config.name,
        "rounds": config.rounds,
        "machine": machine(),
        "config": dataclasses.asdict(config),
    }
    results = Results()
    peaks: dict[str, int] = {}
    # Every account is signed up from 127.0.0.1: no per-address sign-up limit here.
    stack = BenchStack(
        out_dir=args.out,
        service_env={"BCRYPT_ROUNDS": str(config.bcrypt_rounds), "SIGNUP_PER_ADDRESS": "100000"},
    )
    # SIGTERM (e.g. a test's timeout) stops the stack as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        say(f"bench: starting the stack (logs in {args.out / 'logs'})")
        stack.start()
        meta["stack_folder"] = str(stack.state_folder)
        account = sign_up(stack.endpoints.gateway, "bench")
        warm_up(stack, account)
        memory = meta["peak_rss_mb_after_section"] = {}
        foreign = meta["foreign_cpu_percent_by_section"] = {}
        load = ForeignLoad(stack)

        def note_memory(section: str) -> None:
            # VmHWM only grows: the section that raised a process's peak is visible here.
            memory[section] = {
                name: round(value / 1e6, 1) for name, value in stack.peak_rss_bytes().items()
            }
            if section != "start":
                foreign[section] = load.percent_since_last()

        note_memory("start")
        steps = (
            (
                "upload",
                "1. upload and download throughput",
                lambda: transfers.measure(stack, config, account, results, peaks, say),
            ),
            (
                "control",
                "2. control plane",
                lambda: control_plane.measure(stack, config, account, results, say),
            ),
            (
                "initiation",
                "3. initiation",
                lambda: initiation.measure(stack, config, results, say),
            ),
            (
                "events",
                "4. event latency",
                lambda: event_latency.measure(stack, config, results, say),
            ),
            ("signin", "5. sign-in", lambda: signin.measure(stack, config, account, results, say)),
            (
                "load",
                "7. load without loss",
                lambda: many_uploads.measure(stack, config, results, say),
            ),
            (
                "wan",
                "8. upload across a WAN",
                lambda: wan.measure(stack, config, account, results, say),
            ),
            (
                "browser",
                "9. uploads from a browser",
                lambda: browser.measure(stack, config, account, results, say),
            ),
            (
                "streams",
                "10. live streams",
                lambda: streams.measure(stack, config, results, say),
            ),
            # Last: its million rows stay in the main database.
            (
                "listing",
                "11. a million files",
                lambda: listing.measure(stack, config, results, say),
            ),
        )
        for name, title, step in steps:
            if name in sections:
                say(f"bench: {title}")
                write_out_page_cache()
                step()
                note_memory(name)
                if foreign[name] > FOREIGN_WARNING_PERCENT:
                    say(
                        f"bench: warning: other processes used {foreign[name]:.0f} % of the "
                        f"machine's CPU during '{name}': its figures are disturbed"
                    )
        stack.check_alive()
        say("bench: 6. memory")
        peaks.update(stack.peak_rss_bytes())
        memory_rows(results, peaks)
    except KeyboardInterrupt:
        say("bench: interrupted")
        return 130
    finally:
        say("bench: stopping the stack")
        stack.stop()
    meta["duration_seconds"] = time.monotonic() - started
    text, _ = write(results, meta, args.out)
    print(text)
    say(f"bench: wrote {args.out / 'results.txt'}, results.json and results.png")
    return 0


def main() -> None:
    raise SystemExit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
