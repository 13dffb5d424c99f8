"""5. Sign-in: sign-ins per second through the gateway under a storm, against what bcrypt
allows on this machine (hashes per second at the stack's cost with every core busy,
measured just before each storm), and record-chunk latency through the gateway while the
storm runs (20 a second, paced): hashing must not stall other requests."""
from __future__ import annotations

import os
import threading
import time

import bcrypt

from .api import (Account, PART_SIZE, api_client, http_workload, initiate, raw_post,
                  record_chunk_bodies, run_load)
from .config import BenchConfig
from .control_plane import check_errors
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


def measure(stack: BenchStack, config: BenchConfig, account: Account, results: Results,
            say) -> None:
    e = stack.endpoints
    rate = results.add(Row("signin.rate", "Sign-in", "sign-ins through the gateway "
                           f"(storm at concurrency {config.storm_concurrency})", "sign-ins/s",
                           chart="Sign-in (per second)"))
    bound = results.add(Row("signin.bound", "Sign-in",
                            f"bcrypt bound: cost-{config.bcrypt_rounds} hashes, all cores busy",
                            "hashes/s", chart="Sign-in (per second)"))
    probe_p50 = results.add(Row("signin.probe.p50", "Sign-in",
                                "record-chunk through the gateway during the storm: p50", "ms"))
    probe_p99 = results.add(Row("signin.probe.p99", "Sign-in",
                                "record-chunk through the gateway during the storm: p99", "ms"))
    with api_client(e.gateway, account) as client:
        file_id, _ = initiate(client, 205 * PART_SIZE)
    probes = [raw_post(e.gateway, "/api/files/record-chunk", body,
                       cookie=f"access_token={account.access_token}")
              for body in record_chunk_bodies([file_id], 205)]
    signins = [raw_post(e.gateway, "/api/auth/signin", {
        "user": {"email": account.email, "password": account.password}, "rememberMe": True})]
    for round_number in range(config.rounds):
        stack.check_alive()
        bound.samples.append(bcrypt_bound(config.bcrypt_rounds, config.bcrypt_seconds))
        outcome = run_load([
            http_workload("storm", e.gateway, signins, concurrency=config.storm_concurrency,
                          duration=config.storm_seconds, warmup=config.warmup_seconds),
            http_workload("probe", e.gateway, probes, concurrency=1, rate=PROBE_RATE,
                          duration=config.storm_seconds, warmup=config.warmup_seconds),
        ], timeout=config.storm_seconds + 120)
        for name in ("storm", "probe"):
            check_errors(name, outcome[name])
        rate.samples.append(outcome["storm"]["rate"])
        probe_p50.samples.append(outcome["probe"]["p50_ms"])
        probe_p99.samples.append(outcome["probe"]["p99_ms"])
        say(f"  round {round_number + 1}: {rate.samples[-1]:.1f} sign-ins/s, bound "
            f"{bound.samples[-1]:.1f}/s, record-chunk p99 {probe_p99.samples[-1]:.1f} ms")
