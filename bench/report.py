"""The bench's output: the targets checked against the rows, one plain-text table, the same
figures as JSON, and a PNG chart (matplotlib, headless)."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from .stats import Results, Row, Target

MEMORY_LIMIT_MB = 150.0


def machine() -> dict:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg()[0],
        "commit": commit or None,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def targets(results: Results, load_concurrency: int = 32) -> list[Target]:
    r = results
    found = []

    def add(
        name: str,
        measured: float | None,
        comparison: str,
        threshold: float,
        unit: str = "",
        unavailable: str | None = None,
    ) -> None:
        found.append(Target(name, measured, threshold, comparison, unit, unavailable))

    add("upload: Dropfile / boto3 (a/b)", r.ratio("upload.dropfile", "upload.boto3"), "≥", 0.95)
    add(
        "upload: Dropfile / browser algorithm (a/c)",
        r.ratio("upload.dropfile", "upload.browser"),
        "≥",
        2.0,
    )
    add("upload: Dropfile / s5cmd (a/d)", r.ratio("upload.dropfile", "upload.s5cmd"), "≥", 0.95)
    add("download: Dropfile / boto3", r.ratio("download.dropfile", "download.boto3"), "≥", 0.95)
    add(
        "control plane: gateway / floor calls/s (a/c)",
        r.ratio("control.gateway.rate", "control.floor.rate"),
        "≥",
        0.5,
    )
    add(
        f"control plane: gateway p99 / floor p99 at concurrency {load_concurrency}",
        r.ratio("control.gateway.p99", "control.floor.p99"),
        "≤",
        1.5,
    )
    # A ratio to the floor measured in the same run: absolute milliseconds move with the machine.
    add(
        "control plane: gateway p50 one at a time / floor's",
        r.ratio("control.gateway.serial_p50", "control.floor.serial_p50"),
        "≤",
        2.0,
    )
    for parts, limit in ((205, 60.0), (10_000, 1000.0)):
        add(
            f"initiation: v1 {parts:,} URLs p50", r.median(f"init.v1.{parts}.p50"), "<", limit, "ms"
        )
    v2 = r.rows.get("init.v2.5tib.p50")
    add(
        "initiation: v2 5 TiB p50",
        r.median("init.v2.5tib.p50"),
        "<",
        20.0,
        "ms",
        v2.unavailable if v2 else None,
    )
    add("event → UPLOADED p99, SQS path", r.median("event.sqs.p99"), "<", 1000.0, "ms")
    add(
        "event → UPLOADED p99, reconciler path", r.median("event.reconciler.p99"), "<", 2000.0, "ms"
    )
    add("sign-ins / bcrypt bound", r.ratio("signin.rate", "signin.bound"), "≥", 0.9)
    add("record-chunk p99 during the sign-in storm", r.median("signin.probe.p99"), "<", 50.0, "ms")
    add(
        "refresh p99 during the sign-in flood",
        r.median("signin.flood.refresh.p99"),
        "<",
        100.0,
        "ms",
    )
    add(
        "authenticate p99 during the sign-in flood",
        r.median("signin.flood.authenticate.p99"),
        "<",
        100.0,
        "ms",
    )
    add(
        "load: burst files/s / boto3 put_object's at the same concurrency",
        r.ratio("load.burst.rate", "load.burst.boto3.rate"),
        "≥",
        0.5,
    )
    add(
        "WAN upload: Dropfile / original browser algorithm (a/b)",
        r.ratio("wan.dropfile", "wan.browser"),
        "≥",
        2.0,
    )
    best = max(
        (v for v in (r.median("wan.boto3"), r.median("wan.s5cmd")) if v is not None), default=None
    )
    dropfile_wan = r.median("wan.dropfile")
    add(
        "WAN upload: Dropfile / best of boto3 and s5cmd",
        dropfile_wan / best if dropfile_wan is not None and best else None,
        "≥",
        0.95,
    )
    for profile, threshold in (("loopback", 1.0), ("wan", 2.0)):
        add(
            f"browser, {profile}: web app / original browser algorithm",
            r.ratio(f"browser.{profile}.webapp", f"browser.{profile}.original"),
            "≥",
            threshold,
        )
    add(
        "list: v2 first page p50, the 100,000-file user",
        r.median("listing.v2.first_page.p50"),
        "<",
        10.0,
        "ms",
    )
    add(
        "list: v1 list of a 1,000-file user p50", r.median("listing.v1.medium.p50"), "<", 30.0, "ms"
    )
    add(
        "list: upload coordinator RSS while the 100,000-file user lists",
        r.median("listing.memory.upload"),
        "<",
        MEMORY_LIMIT_MB,
        "MB",
    )
    add(
        "live streams: events process peak RSS holding them",
        r.median("streams.peak_rss"),
        "<",
        MEMORY_LIMIT_MB,
        "MB",
    )
    add(
        "live streams: status change → all of a user's streams p99",
        r.median("streams.fanout.p99"),
        "<",
        100.0,
        "ms",
    )
    memory = [row for row in r.rows.values() if row.section == "Memory"]
    worst = max(memory, key=lambda row: row.median or 0, default=None)
    add(
        f"peak RSS of every Dropfile process (largest: {worst.name if worst else '-'})",
        worst.median if worst else None,
        "<",
        MEMORY_LIMIT_MB,
        "MB",
    )
    return found


def _number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(results: Results, checks: list[Target], meta: dict) -> str:
    m = meta["machine"]
    lines = [
        f"Dropfile bench ({meta['profile']}, {meta['rounds']} round(s), "
        f"{meta['duration_seconds']:.0f} s) on {m['cores']} cores {m['cpu']}, "
        f"{m['memory_gib']} GiB, Python {m['python']}, {m['date']}"
    ]
    foreign = meta.get("foreign_cpu_percent_by_section") or {}
    if foreign:
        lines.append(
            "CPU used by other processes during each section (disturbance): "
            + ", ".join(f"{name} {value:.0f} %" for name, value in foreign.items())
        )
    lines.append("")
    header = f"{'section':<18} {'row':<66} {'median':>9} {'min':>9} {'max':>9}  unit"
    lines += [header, "-" * len(header)]
    section = None
    for row in results.rows.values():
        label = row.section if row.section != section else ""
        section = row.section
        if row.unavailable:
            lines.append(f"{label:<18} {row.name:<66} {row.unavailable:>29}  {row.unit}")
            continue
        lines.append(
            f"{label:<18} {row.name:<66} {_number(row.median):>9} "
            f"{_number(row.low):>9} {_number(row.high):>9}  {row.unit}"
        )
    lines += ["", "Targets (medians of the same run)", "-" * len(header)]
    for check in checks:
        unit = f" {check.unit}" if check.unit else ""
        if check.unavailable or check.measured is None:
            verdict, measured = check.unavailable or "not measured", ""
        else:
            verdict = "met" if check.met else "MISSED"
            measured = f"{_number(check.measured)}{unit}"
        wanted = f"{check.comparison} {_number(check.threshold)}{unit}"
        lines.append(f"{check.name:<66} {measured:>12} {wanted:>12}  {verdict}")
    return "\n".join(lines)


def to_json(results: Results, checks: list[Target], meta: dict) -> dict:
    return {
        **meta,
        "rows": [row.to_json() for row in results.rows.values()],
        "targets": [check.to_json() for check in checks],
    }


def chart(results: Results, meta: dict, path: Path) -> None:
    """One horizontal bar chart per group of rows (section and unit, or the row's own
    `chart` group): medians, with min-max whiskers, in one column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[Row]] = {}
    for row in results.rows.values():
        if row.samples:
            groups.setdefault(row.chart or f"{row.section} ({row.unit})", []).append(row)
    heights = [0.8 + 0.32 * len(rows) for rows in groups.values()]
    figure, axes = plt.subplots(
        len(groups),
        1,
        figsize=(12, 0.8 + sum(heights)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for axis, (title, rows) in zip(axes.flat, groups.items()):
        names = [_short(row.name, 70) for row in rows][::-1]
        medians = [row.median for row in rows][::-1]
        lows = [row.median - row.low for row in rows][::-1]
        highs = [row.high - row.median for row in rows][::-1]
        axis.barh(
            names,
            medians,
            xerr=[lows, highs],
            color="#4c78a8",
            ecolor="#555555",
            capsize=3,
            height=0.6,
        )
        for y, (value, high) in enumerate(zip(medians, highs)):
            axis.text(value + high, y, f"  {_number(value)}", va="center", fontsize=8)
        axis.set_title(title, fontsize=10, loc="left")
        axis.tick_params(axis="both", labelsize=8)
        axis.margins(x=0.15)
    m = meta["machine"]
    figure.suptitle(
        f"Dropfile bench: medians of {meta['rounds']} round(s), whiskers min-max "
        f"({m['cores']} cores, {m['cpu']}, {m['date'][:10]})",
        fontsize=11,
    )
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (0.8 + sum(heights))))
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _short(name: str, limit: int = 60) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def write(results: Results, meta: dict, out_dir: Path) -> tuple[str, dict]:
    checks = targets(results, meta["config"]["load_concurrency"])
    text = table(results, checks, meta)
    data = to_json(results, checks, meta)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.txt").write_text(text + "\n")
    (out_dir / "results.json").write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    chart(results, meta, out_dir / "results.png")
    return text, data
