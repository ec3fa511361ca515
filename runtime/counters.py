"""DecisionCounters: running totals of allowed and denied decisions, cheap enough for every decision.

The hot path is one ``next()`` on an :func:`itertools.count`, which CPython
runs as a single C call: no Python lock, no lost increments between threads.
A reader takes a snapshot by advancing each counter once more and subtracting
the advances made by reads (readers serialise on a lock of their own, off the
hot path). Totals only grow; a heartbeat reports the difference between two
snapshots.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

__all__ = ["DecisionCounters", "DecisionCounts"]


@dataclass(frozen=True)
class DecisionCounts:
    """A snapshot of totals, or the difference of two snapshots."""

    allowed: int = 0
    denied: int = 0

    def __sub__(self, other: DecisionCounts) -> DecisionCounts:
        return DecisionCounts(self.allowed - other.allowed, self.denied - other.denied)

    def as_dict(self) -> dict[str, int]:
        """``{"allowed", "denied"}``, as a heartbeat carries them."""
        return {"allowed": self.allowed, "denied": self.denied}


class DecisionCounters:
    """Monotonic totals of decisions; ``count`` is safe from any thread and task."""

    def __init__(self) -> None:
        self._allowed = itertools.count()
        self._denied = itertools.count()
        self._reads = 0  # advances of each counter made by snapshot(), under _read_lock
        self._read_lock = threading.Lock()

    def count(self, allowed: bool) -> None:
        """Count one decision (a deny includes a failure that stood in for a decision)."""
        next(self._allowed if allowed else self._denied)

    def snapshot(self) -> DecisionCounts:
        """The totals so far."""
        with self._read_lock:
            allowed = next(self._allowed) - self._reads
            denied = next(self._denied) - self._reads
            self._reads += 1
        return DecisionCounts(allowed, denied)
