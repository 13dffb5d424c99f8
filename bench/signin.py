"""5. Sign-in: sign-ins per second through the gateway under a storm, against what bcrypt
allows on this machine (hashes per second at the stack's cost with every core busy,
measured just before each storm), and record-chunk latency through the gateway while the
storm runs (20 a second, paced): hashing must not stall other requests.

Then a flood: `flood_concurrency` connections sign in back to back, each time at an
account that does not exist (a fresh email: no attempt limit applies, each is a bcrypt
check or a refusal of the full hashing queue), while one user refreshes and authenticates
through the same gateway (paced): their p99 shows whether sign-ins waiting for bcrypt take
the threads other RPCs need."""

from __future__ import annotations

import os
import secrets
import statistics
import threading
import time

import bcrypt
import httpx

from .api import (
    PART_SIZE,
    Account,
    api_client,
    http_workload,
    initiate,
    raw_post,
    record_chunk_bodies,
    run_load,
    sign_up,
)
from .config import BenchConfig
from .control_plane import check_errors
from .loadgen import percentile
from .stack import BenchStack
from .stats import Results, Row

# record-chunk calls per second beside the storm: paced, so that the probe itself takes
# little of the CPU the sign-ins are measured against.
PROBE_RATE = 20.0


def bcrypt_bound(rounds: int, seconds: float) -> float:
    """Hashes per second with one hashing thread per core (bcrypt releases the GIL)."""
    password = b"a bench password"
    hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds))
    done = []
    stop_at = time.perf_counter() + seconds

    def hash_until_stopped() -> None:
        count = 0
        while time.perf_counter() < stop_at:
            bcrypt.checkpw(password, hashed)
            count += 1
        done.append((count, time.perf_counter()))

    threads = [threading.Thread(target=hash_until_stopped) for _ in range(os.cpu_count() or 1)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Each thread finishes its last hash after the deadline: count over the real span.
    return sum(count for count, _ in done) / (max(end for _, end in done) - started)


def measure(
    stack: BenchStack, config: BenchConfig, account: Account, results: Results, say
) -> None:
    e = stack.endpoints
    rate = results.add(
        Row(
            "signin.rate",
            "Sign-in",
            f"sign-ins through the gateway (storm at concurrency {config.storm_concurrency})",
            "sign-ins/s",
            chart="Sign-in (per second)",
        )
    )
    bound = results.add(
        Row(
            "signin.bound",
            "Sign-in",
            f"bcrypt bound: cost-{config.bcrypt_rounds} hashes, all cores busy",
            "hashes/s",
            chart="Sign-in (per second)",
        )
    )
    probe_p50 = results.add(
        Row(
            "signin.probe.p50",
            "Sign-in",
            "record-chunk through the gateway during the storm: p50",
            "ms",
        )
    )
    probe_p99 = results.add(
        Row(
            "signin.probe.p99",
            "Sign-in",
            "record-chunk through the gateway during the storm: p99",
            "ms",
        )
    )
    flood_refresh = results.add(
        Row(
            "signin.flood.refresh.p99",
            "Sign-in",
            f"refresh through the gateway during a flood of {config.flood_concurrency}: p99",
            "ms",
        )
    )
    flood_authenticate = results.add(
        Row(
            "signin.flood.authenticate.p99",
            "Sign-in",
            f"authenticate through the gateway during a flood of {config.flood_concurrency}: p99",
            "ms",
        )
    )
    with api_client(e.gateway, account) as client:
        file_id, _ = initiate(client, 205 * PART_SIZE)
    probes = [
        raw_post(
            e.gateway,
            "/api/files/record-chunk",
            body,
            cookie=f"access_token={account.access_token}",
        )
        for body in record_chunk_bodies([file_id], 205)
    ]
    # One account per connection: sign-in attempts are limited per account (a few at once
    # from one address start its delays), and a storm of the same user is not the case.
    storm_accounts = [
        sign_up(e.gateway, f"bench-storm-{i}") for i in range(config.storm_concurrency)
    ]
    signins = [
        raw_post(
            e.gateway,
            "/api/auth/signin",
            {"user": {"email": a.email, "password": a.password}, "rememberMe": True},
        )
        for a in storm_accounts
    ]
    for round_number in range(config.rounds):
        stack.check_alive()
        bound.samples.append(bcrypt_bound(config.bcrypt_rounds, config.bcrypt_seconds))
        outcome = run_load(
            [
                http_workload(
                    "storm",
                    e.gateway,
                    signins,
                    concurrency=config.storm_concurrency,
                    duration=config.storm_seconds,
                    warmup=config.warmup_seconds,
                ),
                http_workload(
                    "probe",
                    e.gateway,
                    probes,
                    concurrency=1,
                    rate=PROBE_RATE,
                    duration=config.storm_seconds,
                    warmup=config.warmup_seconds,
                ),
            ],
            timeout=config.storm_seconds + 120,
        )
        for name in ("storm", "probe"):
            check_errors(name, outcome[name])
        rate.samples.append(outcome["storm"]["rate"])
        probe_p50.samples.append(outcome["probe"]["p50_ms"])
        probe_p99.samples.append(outcome["probe"]["p99_ms"])
        say(
            f"  round {round_number + 1}: {rate.samples[-1]:.1f} sign-ins/s, bound "
            f"{bound.samples[-1]:.1f}/s, record-chunk p99 {probe_p99.samples[-1]:.1f} ms"
        )
        refresh, authenticate, statuses = _flood(e.gateway, account, config)
        flood_refresh.samples.append(percentile(sorted(refresh), 99) * 1000)
        flood_authenticate.samples.append(percentile(sorted(authenticate), 99) * 1000)
        # How the flood was answered (401: checked; 503: refused at once, queue full).
        flood_refresh.details.append({"flood_statuses": statuses})
        say(
            f"  round {round_number + 1}: flood {statuses}; refresh p99 "
            f"{flood_refresh.samples[-1]:.1f} ms, authenticate p99 "
            f"{flood_authenticate.samples[-1]:.1f} ms over {len(refresh)} "
            f"(medians {statistics.median(refresh) * 1000:.1f} / "
            f"{statistics.median(authenticate) * 1000:.1f} ms)"
        )


def _flood(
    gateway: str, account: Account, config: BenchConfig
) -> tuple[list[float], list[float], dict[str, int]]:
    """Runs the flood (load generator process) and, beside it, refresh then authenticate
    every 50 ms through the gateway; returns their latencies (s) and the flood's statuses."""
    requests = [
        raw_post(
            gateway,
            "/api/auth/signin",
            {
                "user": {
                    "email": f"flood-{secrets.token_hex(6)}@bench.example.com",
                    "password": "not the password",
                }
            },
        )
        for _ in range(20_000)
    ]
    outcome: dict = {}
    flood = threading.Thread(
        target=lambda: outcome.update(
            run_load(
                [
                    http_workload(
                        "flood",
                        gateway,
                        requests,
                        concurrency=config.flood_concurrency,
                        duration=config.storm_seconds,
                        warmup=config.warmup_seconds,
                    )
                ],
                timeout=config.storm_seconds + 120,
            )
        )
    )
    refresh: list[float] = []
    authenticate: list[float] = []
    with httpx.Client(base_url=gateway, timeout=60) as user:
        user.post(
            "/api/auth/signin",
            json={"user": {"email": account.email, "password": account.password}},
        ).raise_for_status()
        flood.start()
        time.sleep(config.warmup_seconds)
        while flood.is_alive():
            started = time.perf_counter()
            user.get("/api/auth/refresh").raise_for_status()
            refreshed = time.perf_counter()
            user.get("/api/auth/authenticate").raise_for_status()
            refresh.append(refreshed - started)
            authenticate.append(time.perf_counter() - refreshed)
            time.sleep(0.05)
    flood.join()
    if not refresh:
        raise RuntimeError("the flood ended before a refresh was measured")
    return refresh, authenticate, outcome["flood"]["statuses"]
