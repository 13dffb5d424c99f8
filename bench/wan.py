"""8. Upload across a WAN: the client reaches the gateway and the store through delaying
proxies (bench/wan_proxy.py: 20 ms round trip, 1 Gbit/s each way), as real users reach S3
across tens of milliseconds. Every method runs with its own defaults: Dropfile's SDK, the
original browser algorithm (a record round trip after every part, batches of three), boto3's
`upload_file` and s5cmd straight to the store through the same proxy; rounds interleaved.

The proxy itself is measured first: the round trip it adds to one small request (against the
same request straight to gateway-wan), and boto3's throughput through a proxy of the same
code with no delay and no rate limit against boto3 straight to the store, which is the
proxy's own cost in copying bytes."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

from .api import Account, api_client
from .config import BenchConfig
from .stack import ROOT, BenchStack, free_port, host_port
from .stats import Results, Row
from .transfers import MIB, _delete, cpu_used, random_file, transfer

UPLOADS = (
    ("wan.dropfile", "a. Dropfile CLI/SDK, whole stack", "dropfile-upload"),
    ("wan.browser", "b. original browser algorithm, whole stack", "browser-upload"),
    ("wan.boto3", "c. boto3 upload_file, straight to the store", "boto3-upload"),
    ("wan.s5cmd", "d. s5cmd cp, straight to the store", "s5cmd-upload"),
)
ROUND_TRIP_SAMPLES = 30


@contextmanager
def passthrough_proxy(target_port: int) -> Iterator[str]:
    """The same proxy with no delay and no rate limit: what copying through it costs."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.wan_proxy",
            "--target",
            f"127.0.0.1:{target_port}",
            "--port",
            str(port),
            "--rtt-ms",
            "0",
            "--mbit",
            "1000000",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening"):
            raise RuntimeError("the pass-through proxy did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def request_round_trip_ms(url: str) -> float:
    """p50 of one small request on an open connection (the connection's set-up excluded)."""
    with httpx.Client(base_url=url, timeout=10) as client:
        client.get("/healthz").raise_for_status()
        samples = []
        for _ in range(ROUND_TRIP_SAMPLES):
            started = time.perf_counter()
            client.get("/healthz").raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def measure(
    stack: BenchStack,
    config: BenchConfig,
    account: Account,
    results: Results,
    say: Callable[[str], None],
) -> None:
    e = stack.endpoints
    size = config.wan_file_size
    base = {
        "email": account.email,
        "password": account.password,
        "access_key": e.s3_access_key,
        "secret_key": e.s3_secret_key,
        "bucket": e.s3_bucket,
        "region": e.region,
        "concurrency": config.concurrency,
        "bytes": size,
        "defaults": True,
    }
    direct_gateway = f"http://127.0.0.1:{stack.ports['gateway-wan']}"
    added = results.add(Row("wan.proxy.round_trip", "WAN", "proxy: round trip it adds", "ms"))
    added.samples.append(
        request_round_trip_ms(e.gateway_wan) - request_round_trip_ms(direct_gateway)
    )
    copy_direct = results.add(
        Row("wan.proxy.direct", "WAN", "proxy cost: boto3 straight to the store", "MiB/s")
    )
    copy_proxied = results.add(
        Row("wan.proxy.passthrough", "WAN", "proxy cost: boto3 through a 0 ms proxy", "MiB/s")
    )
    rows = {row_id: results.add(Row(row_id, "WAN", name, "MiB/s")) for row_id, name, _ in UPLOADS}
    api = api_client(e.gateway, account)
    try:
        with random_file(size) as path:
            with passthrough_proxy(host_port(e.s3_endpoint)[1]) as passthrough:
                for endpoint, row in ((e.s3_endpoint, copy_direct), (passthrough, copy_proxied)):
                    done = transfer(
                        {
                            **base,
                            "method": "boto3-upload",
                            "path": str(path),
                            "s3_endpoint": endpoint,
                        }
                    )
                    row.samples.append(size / MIB / done["seconds"])
                    _delete(api, stack, done)
            say(
                f"  proxy: +{added.samples[0]:.1f} ms per round trip; copying through it "
                f"{copy_proxied.samples[0] / copy_direct.samples[0]:.2f}x of direct"
            )
            for round_number in range(config.rounds):
                for row_id, _, method in UPLOADS:
                    stack.check_alive()
                    before = stack.cpu_seconds()
                    done = transfer(
                        {
                            **base,
                            "method": method,
                            "path": str(path),
                            "gateway": e.gateway_wan,
                            "s3_endpoint": e.s3_endpoint_wan,
                        },
                        timeout=1800,
                    )
                    spent = cpu_used(before, stack.cpu_seconds(), done)
                    rows[row_id].samples.append(size / MIB / done["seconds"])
                    rows[row_id].details.append(spent)
                    say(
                        f"  round {round_number + 1}: {method} {rows[row_id].samples[-1]:.0f} MiB/s"
                        f", CPU-s {spent['cpu_seconds']}"
                    )
                    _delete(api, stack, done)
    finally:
        api.close()
