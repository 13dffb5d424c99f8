"""Rows of the result: each the median of several rounds with min and max, and the targets
checked against them (ratios from the same run, or latencies)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


@dataclass
class Row:
    id: str
    section: str
    name: str
    unit: str
    samples: list[float] = field(default_factory=list)
    # Set instead of samples when the row cannot be measured (e.g. "n/a (no v2 API)").
    unavailable: str | None = None
    note: str = ""
    # The chart panel it is drawn in (default: its section and unit).
    chart: str | None = None
    # Per round, what explains the figure (CPU seconds by process, for instance): JSON only.
    details: list[dict] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def low(self) -> float | None:
        return min(self.samples) if self.samples else None

    @property
    def high(self) -> float | None:
        return max(self.samples) if self.samples else None

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "section": self.section,
            "name": self.name,
            "unit": self.unit,
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "rounds": len(self.samples),
            "samples": self.samples,
            "unavailable": self.unavailable,
            "note": self.note,
            "details": self.details,
        }


@dataclass
class Target:
    name: str
    # What is compared, e.g. "a/b" or "p50".
    measured: float | None
    threshold: float
    # "≥" or "<" (or "≤").
    comparison: str
    unit: str = ""
    unavailable: str | None = None

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        if self.comparison == "≥":
            return self.measured >= self.threshold
        if self.comparison == "≤":
            return self.measured <= self.threshold
        return self.measured < self.threshold

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "measured": self.measured,
            "threshold": self.threshold,
            "comparison": self.comparison,
            "unit": self.unit,
            "met": self.met,
            "unavailable": self.unavailable,
        }


class Results:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}

    def add(self, row: Row) -> Row:
        if row.id in self.rows:
            raise ValueError(f"row {row.id} added twice")
        self.rows[row.id] = row
        return row

    def median(self, row_id: str) -> float | None:
        row = self.rows.get(row_id)
        return row.median if row else None

    def ratio(self, top: str, bottom: str) -> float | None:
        a, b = self.median(top), self.median(bottom)
        if a is None or b is None or b == 0:
            return None
        return a / b
