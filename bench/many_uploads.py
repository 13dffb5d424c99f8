"""7. Load without loss: many uploads at once through the gateway, every one of which must
end UPLOADED (any error fails the bench).

- Small: `load_small_uploads` single-part uploads of 1 KiB at once (v1, as the browser client
  does: initiate, PUT, record, complete), spread over four accounts.
- Large: `load_large_uploads` uploads of `load_large_size` at once through the SDK (v2,
  four parts in flight each).
- Burst: `load_burst_uploads` single-part uploads of `load_burst_size` (1 MiB) at once, as
  the small ones, over enough accounts that no one passes MAX_UPLOADS_IN_PROGRESS; beside
  it, boto3's `put_object` of the same objects straight to the store at the same
  concurrency (no Dropfile at all), whose files per second it is compared with.
Figures: files per second (all files over the wall time from the first start to the last
UPLOADED) and the p99 of one file's time from its first request to UPLOADED being
visible through the API. The main stack: SeaweedFS, confirmed by the reconciler."""

from __future__ import annotations

import os
import resource
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tools.processes import run_json_module

from .api import Account, sign_up
from .config import BenchConfig
from .stack import ROOT, BenchStack
from .stats import Results, Row, percentile

SMALL = 1024
# How long an upload may take from its first request to UPLOADED.
UPLOADED_TIMEOUT = 300.0
ACCOUNTS = 4
# MAX_UPLOADS_IN_PROGRESS's default is 100 per user: the burst spreads over more accounts.
BURST_UPLOADS_PER_ACCOUNT = 50


class LoadError(RuntimeError):
    pass


def _burst(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Runs bench/upload_burst.py in a process of its own; returns its report."""
    try:
        return run_json_module("bench.upload_burst", spec, cwd=ROOT, timeout=timeout)
    except RuntimeError as exc:
        raise LoadError(f"the load generator failed: {exc}") from None


def _dropfile_burst(
    stack: BenchStack, accounts: list[Account], count: int, size: int, flow: str
) -> dict[str, Any]:
    return _burst(
        {
            "flow": flow,
            "gateway": stack.endpoints.gateway,
            "tokens": [a.access_token for a in accounts],
            "count": count,
            "size": size,
            "timeout": UPLOADED_TIMEOUT,
        },
        timeout=UPLOADED_TIMEOUT + 120,
    )


def _large_upload(gateway: str, account, path: Path, folder: Path, index: int) -> float:
    from dropfile_client import DropfileClient

    started = time.monotonic()
    with DropfileClient(gateway, session_file=folder / f"session-{index}.json") as client:
        client.login(account.email, account.password)
        info = client.upload(path, name=f"load-{index}.bin", wait=True, wait_timeout=600)
        if info.size != path.stat().st_size:
            raise LoadError(f"{info.file_id}: size {info.size}")
    return time.monotonic() - started


def _put_burst(stack: BenchStack, count: int, size: int) -> dict[str, Any]:
    """`count` objects of `size` bytes PUT at once straight to the store (put_object, signed
    by botocore, from the same generator); the objects are deleted afterwards."""
    import boto3
    from botocore.config import Config

    e = stack.endpoints
    report = _burst(
        {
            "flow": "put",
            "endpoint": e.s3_endpoint,
            "region": e.region,
            "access_key": e.s3_access_key,
            "secret_key": e.s3_secret_key,
            "bucket": e.s3_bucket,
            "prefix": "bench/burst/",
            "count": count,
            "size": size,
        },
        timeout=UPLOADED_TIMEOUT + 120,
    )
    s3 = boto3.session.Session().client(
        "s3",
        endpoint_url=e.s3_endpoint,
        region_name=e.region,
        aws_access_key_id=e.s3_access_key,
        aws_secret_access_key=e.s3_secret_key,
        config=Config(s3={"addressing_style": "path"}),
    )
    keys = report.pop("keys")
    for first in range(0, len(keys), 1000):
        s3.delete_objects(
            Bucket=e.s3_bucket,
            Delete={"Objects": [{"Key": key} for key in keys[first : first + 1000]]},
        )
    return report


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        name: round(after[name] - before.get(name, 0.0), 2)
        for name in sorted(after, key=lambda name: before.get(name, 0.0) - after[name])
        if after[name] - before.get(name, 0.0) >= 0.05
    }


def _in_threads(jobs) -> dict[str, Any]:
    """Runs every job at once, a thread each (the SDK's uploads); a report as
    upload_burst.py's (this process's CPU as the generator's)."""
    own_before, started = _own_cpu_seconds(), time.monotonic()
    seconds, errors = [], []
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        for future in [pool.submit(job) for job in jobs]:
            try:
                seconds.append(future.result())
            except Exception as exc:  # noqa: BLE001 - every error is counted and reported
                errors.append(f"{type(exc).__name__}: {exc}")
    return {
        "count": len(jobs),
        "seconds": seconds,
        "wall": time.monotonic() - started,
        "errors": errors,
        "cpu_seconds": round(_own_cpu_seconds() - own_before, 2),
    }


def measure(stack: BenchStack, config: BenchConfig, results: Results, say) -> None:
    gateway = stack.endpoints.gateway
    accounts = [sign_up(gateway, f"bench-load-{i}") for i in range(ACCOUNTS)]
    rows = {
        "small": (
            Row(
                "load.small.rate",
                "Load",
                f"{config.load_small_uploads} x 1 KiB at once: files/s",
                "files/s",
                chart="Load: files/s",
            ),
            Row(
                "load.small.p99",
                "Load",
                f"{config.load_small_uploads} x 1 KiB at once: p99 to UPLOADED",
                "ms",
                chart="Load: p99 to UPLOADED",
            ),
        ),
        "large": (
            Row(
                "load.large.rate",
                "Load",
                f"{config.load_large_uploads} x "
                f"{config.load_large_size >> 20} MiB at once: files/s",
                "files/s",
                chart="Load: files/s",
            ),
            Row(
                "load.large.p99",
                "Load",
                f"{config.load_large_uploads} x "
                f"{config.load_large_size >> 20} MiB at once: p99 to UPLOADED",
                "ms",
                chart="Load: p99 to UPLOADED",
            ),
        ),
    }
    burst_size = f"{config.load_burst_size >> 20} MiB"
    rows["burst"] = (
        Row(
            "load.burst.rate",
            "Load",
            f"{config.load_burst_uploads} x {burst_size} at once: files/s",
            "files/s",
            chart="Load: files/s",
        ),
        Row(
            "load.burst.p99",
            "Load",
            f"{config.load_burst_uploads} x {burst_size} at once: p99 to UPLOADED",
            "ms",
            chart="Load: p99 to UPLOADED",
        ),
    )
    if config.load_burst_compare_flow:
        # The same burst by another flow, in the same round: an A/B on one noisy machine.
        compare = config.load_burst_compare_flow
        rows["burst_compare"] = (
            Row(
                f"load.burst.{compare}.rate",
                "Load",
                f"{config.load_burst_uploads} x {burst_size} at once, {compare} flow: files/s",
                "files/s",
                chart="Load: files/s",
            ),
            Row(
                f"load.burst.{compare}.p99",
                "Load",
                f"{config.load_burst_uploads} x {burst_size} at once, {compare} flow: "
                "p99 to UPLOADED",
                "ms",
                chart="Load: p99 to UPLOADED",
            ),
        )
    for rate, p99 in rows.values():
        results.add(rate)
        results.add(p99)
    boto3_burst = results.add(
        Row(
            "load.burst.boto3.rate",
            "Load",
            f"boto3 put_object straight to the store, {config.load_burst_uploads} x "
            f"{burst_size} at once: files/s",
            "files/s",
            chart="Load: files/s",
        )
    )
    burst_accounts = [
        sign_up(gateway, f"bench-burst-{i}")
        for i in range(-(-config.load_burst_uploads // BURST_UPLOADS_PER_ACCOUNT))
    ]
    with tempfile.TemporaryDirectory(prefix="bench-load-") as folder_name:
        folder = Path(folder_name)
        big = folder / "large.bin"
        with open(big, "wb") as handle:
            for _ in range(config.load_large_size // (1 << 20)):
                handle.write(os.urandom(1 << 20))
        for round_number in range(config.load_rounds):
            stack.check_alive()
            m = config.load_large_uploads
            large = [
                lambda i=i, first=round_number * m: _large_upload(
                    gateway, accounts[i % ACCOUNTS], big, folder, first + i
                )
                for i in range(m)
            ]
            runs = {
                "small": lambda: _dropfile_burst(
                    stack, accounts, config.load_small_uploads, SMALL, "v1"
                ),
                "large": lambda large=large: _in_threads(large),
                "burst": lambda: _dropfile_burst(
                    stack,
                    burst_accounts,
                    config.load_burst_uploads,
                    config.load_burst_size,
                    config.load_burst_flow,
                ),
            }
            if config.load_burst_compare_flow:
                runs["burst_compare"] = lambda: _dropfile_burst(
                    stack,
                    burst_accounts,
                    config.load_burst_uploads,
                    config.load_burst_size,
                    config.load_burst_compare_flow,
                )
            for kind, run in runs.items():
                before = stack.cpu_seconds()
                report = run()
                used = _cpu_used(before, stack.cpu_seconds())
                used["load generator (the bench)"] = report["cpu_seconds"]
                seconds, wall, errors = report["seconds"], report["wall"], report["errors"]
                if errors:
                    raise LoadError(
                        f"{len(errors)} of {report['count']} {kind} uploads failed: "
                        + "; ".join(errors[:5])
                    )
                rate, p99 = rows[kind]
                rate.samples.append(report["count"] / wall)
                p99.samples.append(percentile(seconds, 99) * 1000)
                rate.note = p99.note = "0 errors"
                # What each process spent while they ran: where the files per second go.
                rate.details.append(
                    {
                        "wall_seconds": round(wall, 2),
                        "cpu_seconds": used,
                        "generator": {
                            k: v for k, v in report.items() if k not in ("seconds", "errors")
                        },
                    }
                )
                say(
                    f"  round {round_number + 1}: {kind}: {report['count']} files, 0 errors, "
                    f"{rate.samples[-1]:.1f} files/s, p99 {p99.samples[-1]:.0f} ms, "
                    f"CPU-seconds {used}"
                )
            before = stack.cpu_seconds()
            report = _put_burst(stack, config.load_burst_uploads, config.load_burst_size)
            used = _cpu_used(before, stack.cpu_seconds())
            used["load generator (the bench)"] = report["cpu_seconds"]
            if report["errors"]:
                raise LoadError(
                    f"{len(report['errors'])} of {report['count']} PUTs failed: "
                    + "; ".join(report["errors"][:5])
                )
            boto3_burst.samples.append(report["count"] / report["wall"])
            boto3_burst.details.append(
                {"wall_seconds": round(report["wall"], 2), "cpu_seconds": used}
            )
            say(
                f"  round {round_number + 1}: put_object burst: "
                f"{boto3_burst.samples[-1]:.1f} files/s, CPU-seconds {used}"
            )
