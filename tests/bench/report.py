"""Rows, their ratios to anchors, targets, and the table and JSON they are reported as.

Every ratio is ``row value / anchor value`` in the row's unit. The table words
it for the reader: for a latency or a duration (lower is better) a ratio under 1
reads "12.3x faster than <anchor>", over 1 "1.42x <anchor>"; for a throughput,
a size or a memory figure it is the plain multiple.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Report", "Row", "Target", "render_ratio"]

_DURATIONS = frozenset({"us", "ms", "s"})


@dataclass(frozen=True)
class Target:
    """A goal of the issue and whether this run met it."""

    text: str
    met: bool


@dataclass
class Row:
    """One measurement: ``value`` is the median (or the only value); ``p99`` where there is a distribution."""

    id: str
    group: str  # a key of the report's headings
    label: str
    unit: str
    value: float
    p99: float | None = None
    n: int | None = None
    higher_is_better: bool = False
    ratios: dict[str, float] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def compare(self, anchor: Row) -> float:
        """Record and return ``self.value / anchor.value``."""
        if anchor.unit != self.unit:
            raise ValueError(f"{self.id} ({self.unit}) cannot be compared with {anchor.id} ({anchor.unit})")
        if anchor.value <= 0:
            raise ValueError(f"anchor {anchor.id} has no positive value")
        ratio = self.value / anchor.value
        self.ratios[anchor.id] = ratio
        return ratio

    def aim(self, text: str, met: bool) -> None:
        self.targets.append(Target(text, met))


def render_ratio(ratio: float, anchor: str, *, unit: str, higher_is_better: bool = False) -> str:
    """``0.05`` of an anchor's latency reads "20.0x faster than <anchor>"; anything else is the plain multiple."""
    if unit in _DURATIONS and not higher_is_better and 1 / ratio >= 1.005:
        return f"{_figure(1 / ratio)}x faster than {anchor}"
    return f"{_figure(ratio)}x {anchor}"


def _figure(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit in ("B", "KiB", "ops/s"):
        return f"{value:,.0f}"
    return _figure(value) if value >= 0.01 else f"{value:.2g}"


class Report:
    """The rows of one run, in the order they were measured, with the run's metadata."""

    def __init__(self, meta: Mapping[str, Any], headings: Mapping[str, str] | None = None) -> None:
        self.meta = dict(meta)
        self.headings = dict(headings or {})
        self.rows: list[Row] = []
        self._by_id: dict[str, Row] = {}

    def add(self, row: Row) -> Row:
        if row.id in self._by_id:
            raise ValueError(f"duplicate row {row.id}")
        self.rows.append(row)
        self._by_id[row.id] = row
        return row

    def get(self, row_id: str) -> Row | None:
        return self._by_id.get(row_id)

    def groups(self) -> list[str]:
        return list(dict.fromkeys(row.group for row in self.rows))

    def targets(self) -> Iterable[tuple[Row, Target]]:
        return ((row, target) for row in self.rows for target in row.targets)

    def table(self) -> str:
        """Markdown: one table per group, then the targets with what this run met."""
        lines: list[str] = []
        for group in self.groups():
            lines += [
                f"### {self.headings.get(group, group)}",
                "",
                "| row | what | median / value | p99 | unit | vs anchor |",
                "|---|---|---:|---:|---|---|",
            ]
            for row in (row for row in self.rows if row.group == group):
                ratios = "; ".join(
                    render_ratio(ratio, anchor, unit=row.unit, higher_is_better=row.higher_is_better)
                    for anchor, ratio in row.ratios.items()
                )
                label = f"{row.label} ({row.note})" if row.note else row.label
                value, p99 = _number(row.value, row.unit), _number(row.p99, row.unit)
                lines.append(f"| `{row.id}` | {label} | {value} | {p99} | {row.unit} | {ratios} |")
            lines.append("")
        targets = list(self.targets())
        if targets:
            lines += ["### targets", "", "| row | target | met |", "|---|---|---|"]
            lines += [f"| `{row.id}` | {target.text} | {'yes' if target.met else '**no**'} |" for row, target in targets]
            lines.append("")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"meta": self.meta, "rows": [asdict(row) for row in self.rows]}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
