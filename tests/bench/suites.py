"""The row groups of ``make bench`` by their ``--only`` names, in the order a full run measures them.

Each group is a function of a :class:`~tests.bench.core.Bench`, in the module of its concern:
:mod:`.latency` (anchors, engines, decision-log events, batch checks), :mod:`.lists` (list growth),
:mod:`.throughput` (threads and asyncio) and :mod:`.build` (compile, memory, start-up).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from . import build, latency, lists, throughput
from .core import Bench, Settings, progress

__all__ = ["GROUPS", "HEADINGS", "RUNS", "Bench", "Settings", "progress", "run"]

#: ``--only`` names and table headings, in the order a full run measures them.
HEADINGS = {
    "anchors": "1. anchors: the real OPA (10,000-entry policy)",
    "embedded": "2. embedded engine: PolicyEnforcer over regorus in-process (our binding, rust/)",
    "decision_log": "2b. the cost of a decision-log event (embedded, cache off)",
    "external": "3. external engine: PolicyEnforcer over OPAEngine (OPA REST)",
    "throughput": "4. throughput: tool decisions per second",
    "lookups": "5a. decision cost against list size (embedded, cache off; sizes timed in turn)",
    "compile": "5b. compile scaling",
    "memory": "6. memory",
    "startup": "7. CLI start-up (interpreter included; anchors: `opa version`, `opa eval`)",
    "batch": "8. batch checks: check_many over a tool listing against single decisions",
}
GROUPS = tuple(HEADINGS)

RUNS: dict[str, Callable[[Bench], None]] = {
    "anchors": latency.anchors,
    "embedded": latency.embedded,
    "decision_log": latency.decision_log,
    "external": latency.external,
    "throughput": throughput.throughput,
    "lookups": lists.lookups,
    "compile": build.compile,
    "memory": build.memory,
    "startup": build.startup,
    "batch": latency.batch,
}


def run(bench: Bench, groups: Iterable[str]) -> None:
    """Measure ``groups`` in order, adding their rows to the bench's report."""
    for group in groups:
        progress(f"group {group}")
        RUNS[group](bench)
