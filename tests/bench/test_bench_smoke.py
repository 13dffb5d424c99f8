"""`make bench`'s code, run end to end at tiny sizes (an 11 MiB file, a fraction of a second
of load per row, one round) so that a broken bench fails here. Nothing is timed: the test
checks that every row and target is produced, that the table, JSON and chart are written,
and that the bench leaves no process behind. The bench's stack uses this test run's
PostgreSQL and Redis database; SeaweedFS and moto are its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report
from bench.stats import Results, Row, Target, percentile
from tests.conftest import PG_ADMIN_URL

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

ROWS = [
    "upload.dropfile",
    "upload.boto3",
    "upload.browser",
    "upload.s5cmd",
    "download.dropfile",
    "download.boto3",
    *(
        f"control.{mode}.{metric}"
        for mode in ("gateway", "grpc", "floor")
        for metric in ("rate", "p50", "p99", "serial_p50")
    ),
    "init.v1.205.p50",
    "init.v1.205.p99",
    "init.v1.10000.p50",
    "init.v1.10000.p99",
    "event.sqs.p50",
    "event.sqs.p99",
    "event.reconciler.p50",
    "event.reconciler.p99",
    "signin.rate",
    "signin.bound",
    "signin.probe.p50",
    "signin.probe.p99",
    "signin.flood.refresh.p99",
    "signin.flood.authenticate.p99",
    "load.small.rate",
    "load.small.p99",
    "load.large.rate",
    "load.large.p99",
    "load.burst.rate",
    "load.burst.p99",
    "load.burst.v2-multipart.rate",
    "load.burst.v2-multipart.p99",
    "load.burst.boto3.rate",
    "wan.proxy.round_trip",
    "wan.proxy.direct",
    "wan.proxy.passthrough",
    "wan.dropfile",
    "wan.browser",
    "wan.boto3",
    "wan.s5cmd",
    *(
        f"browser.{profile}.{method}"
        for profile in ("loopback", "wan")
        for method in ("webapp", "original", "cli")
    ),
    "streams.open",
    "streams.rss",
    "streams.peak_rss",
    "streams.fanout.p50",
    "streams.fanout.p99",
    "streams.gateway_rss",
    "streams.gateway_peak_rss",
    "streams.direct.rss",
    "streams.direct.fanout.p99",
    "listing.load.rate",
    "listing.v2.first_page.p50",
    "listing.v2.first_page.p99",
    "listing.v2.filtered.p50",
    "listing.v2.deep_page.p50",
    "listing.v1.medium.p50",
    "listing.v1.medium.p99",
    "listing.v1.big.seconds",
    "listing.v2.all_pages.seconds",
    "listing.memory.upload",
    "listing.memory.gateway",
    *(
        f"memory.{name}"
        for name in (
            "auth",
            "upload",
            "events",
            "gateway",
            "upload-sqs",
            "events-sqs",
            "gateway-sqs",
            "upload-wan",
            "gateway-wan",
            "client.dropfile-upload",
            "client.dropfile-download",
        )
    ),
]


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, redis_url):
    out = tmp_path_factory.mktemp("bench-out")
    env = {**os.environ, "BENCH_PG_URL": PG_ADMIN_URL, "BENCH_REDIS_URL": redis_url}
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--profile", "smoke", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, f"bench failed:\n{result.stderr[-4000:]}"
    return out, result, json.loads((out / "results.json").read_text())


def test_every_row_is_measured(smoke_run):
    _, _, data = smoke_run
    rows = {row["id"]: row for row in data["rows"]}
    assert set(rows) == set(ROWS) | {"init.v2.5tib.p50", "init.v2.5tib.p99"}
    for row_id in ROWS:
        row = rows[row_id]
        assert row["rounds"] == len(row["samples"]) >= 1, row_id
        assert row["min"] <= row["median"] <= row["max"], row_id
        assert row["median"] > 0, row_id
        assert row["unavailable"] is None
    # Measured where the gateway serves the v2 API; otherwise the row says why not.
    for row_id in ("init.v2.5tib.p50", "init.v2.5tib.p99"):
        if rows[row_id]["unavailable"] is None:
            assert rows[row_id]["median"] > 0
        else:
            assert rows[row_id]["unavailable"] == "n/a (no v2 API)"
            assert rows[row_id]["median"] is None
    # Each transfer explains itself: the CPU seconds of the store and of the client.
    assert {"client", "s3"} <= set(rows["upload.dropfile"]["details"][0]["cpu_seconds"])


def test_targets_are_checked_from_the_same_run(smoke_run):
    _, _, data = smoke_run
    targets = {t["name"]: t for t in data["targets"]}
    assert len(targets) == 27
    for target in targets.values():
        if target["unavailable"]:
            assert target["met"] is None
        else:
            assert isinstance(target["measured"], float) and isinstance(target["met"], bool)
    assert data["machine"]["cores"] == os.cpu_count()
    assert data["profile"] == "smoke" and data["rounds"] == 1


def test_the_table_the_json_and_the_chart_are_written(smoke_run):
    out, result, data = smoke_run
    table = (out / "results.txt").read_text()
    assert table.strip() == result.stdout.strip()
    for row in data["rows"]:
        assert row["name"] in table
    assert "Targets" in table and "CPU used by other processes" in table
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "logs" / "gateway.log").exists()


def test_nothing_is_left_running(smoke_run):
    _, _, data = smoke_run
    assert processes_mentioning(data["stack_folder"]) == []
    assert not Path(data["stack_folder"]).exists()


# -- the arithmetic, without a stack ---------------------------------------------------------


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_targets_compare_medians():
    results = Results()
    results.add(Row("upload.dropfile", "Upload", "a", "MiB/s", samples=[90.0, 100.0, 300.0]))
    results.add(Row("upload.boto3", "Upload", "b", "MiB/s", samples=[100.0, 100.0, 10.0]))
    checks = {t.name: t for t in report.targets(results)}
    ratio = checks["upload: Dropfile / boto3 (a/b)"]
    assert ratio.measured == 1.0 and ratio.met is True
    assert checks["download: Dropfile / boto3"].met is None  # not measured
    assert Target("x", 2.0, 2.0, "<").met is False
    assert Target("x", 1.5, 1.5, "≤").met is True
    with pytest.raises(ValueError):
        results.add(Row("upload.boto3", "Upload", "b", "MiB/s"))
