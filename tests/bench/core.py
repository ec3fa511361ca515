"""What every row group shares: the run's settings, and :class:`Bench` (the workload, OPA servers, report helpers).

The row groups live by concern beside this module (``latency``, ``lists``,
``throughput``, ``build``); :mod:`.suites` names them for ``--only``.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from sekuire.compiler import Policy
from sekuire.runtime import EmbeddedEngine, Engine, PolicyEnforcer

from ..conftest import OPAServer
from .opa import activate
from .report import Report, Row
from .stats import Summary, time_calls
from .workload import AGENT_ID, Workload

__all__ = ["Bench", "Factory", "Settings", "progress", "shared", "time_once"]

#: A per-thread call and its cleanup, made in the thread that uses them.
Factory = Callable[[], tuple[Callable[[], object], Callable[[], None]]]


@dataclass(frozen=True)
class Settings:
    """How much to measure; ``quick`` is a smoke run (its numbers are too noisy to quote)."""

    quick: bool
    actions: tuple[str, ...]
    main_size: int = 10_000
    sizes: tuple[int, ...] = (10, 1_000, 10_000, 100_000)
    lookup_sizes: tuple[int, ...] = (10, 100_000)
    #: Tool globs and allowed CIDRs of the list-growth rows (the smallest is their anchor).
    glob_counts: tuple[int, ...] = (10, 1_000, 10_000)
    cidr_counts: tuple[int, ...] = (10, 1_000, 10_000)
    threads: tuple[int, ...] = (1, 2, 8)
    warmup: int = 200
    cold_iterations: int = 5_000
    warm_iterations: int = 20_000
    rest_iterations: int = 2_000
    throughput_seconds: float = 0.5
    #: Runs of each throughput row and of each one-shot duration (builds, activations, enforcer starts).
    repeats: int = 5

    @classmethod
    def make(cls, *, quick: bool, actions: tuple[str, ...]) -> Settings:
        if not quick:
            return cls(quick=False, actions=actions)
        return cls(
            quick=True,
            actions=actions,
            sizes=(10, 1_000),
            lookup_sizes=(10, 1_000),
            glob_counts=(10, 100),
            cidr_counts=(10, 100),
            threads=(1, 2),
            warmup=20,
            cold_iterations=500,
            warm_iterations=2_000,
            rest_iterations=200,
            throughput_seconds=0.2,
            repeats=1,
        )


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


class Bench:
    """One run: the workload, the OPA servers it started (stopped by :meth:`close`), the report it fills."""

    def __init__(self, opa: str, workload: Workload, settings: Settings, report: Report) -> None:
        self.opa = opa
        self.workload = workload
        self.settings = settings
        self.report = report
        self._cleanup = contextlib.ExitStack()

    def close(self) -> None:
        self._cleanup.close()

    def later(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` when the run ends (stopping servers, closing engines)."""
        self._cleanup.callback(callback)

    @functools.cached_property
    def main_policy(self) -> Policy:
        return self.workload.policy(self.settings.main_size)

    @functools.cached_property
    def main_engine(self) -> EmbeddedEngine:
        return self._cleanup.enter_context(EmbeddedEngine.from_policy(self.main_policy))

    @functools.cached_property
    def server(self) -> OPAServer:
        """OPA serving the signed main bundle, as a sidecar would."""
        return self.serve(self.settings.main_size)

    def serve(self, size: int) -> OPAServer:
        server, _ = activate(self.opa, self.workload.bundle(size), self.workload.keys.public_pem)
        self._cleanup.callback(server.stop)
        return server

    def enforcer(self, engine: Engine | None = None, *, cache: bool, policy: Policy | None = None,
                 **options: object) -> PolicyEnforcer:
        """An enforcer of the main policy (or ``policy``) on ``engine`` (the main embedded engine by default)."""
        if policy is None:
            policy, engine = self.main_policy, engine or self.main_engine
        return PolicyEnforcer(policy, engine=engine, cache=cache, agent_id=AGENT_ID, **options)  # type: ignore[arg-type]

    def add(self, group: str, row_id: str, label: str, unit: str, value: float, **fields: object) -> Row:
        return self.report.add(Row(row_id, group, label, unit, value, **fields))  # type: ignore[arg-type]

    def latency(self, group: str, row_id: str, label: str, call: Callable[[], object], iterations: int) -> Row:
        progress(f"  {row_id}")
        return self.summary(group, row_id, label, time_calls(call, warmup=self.settings.warmup, iterations=iterations))

    def summary(self, group: str, row_id: str, label: str, summary: Summary) -> Row:
        return self.add(group, row_id, label, "us", summary.median, p99=summary.p99, n=summary.n,
                        extra={"mean": summary.mean})

    def rate(self, row_id: str, label: str, measure: Callable[[], float]) -> Row:
        """The median of ``repeats`` runs: short runs of GIL-bound threads vary by tens of percent."""
        progress(f"  {row_id}")
        rates = [measure() for _ in range(self.settings.repeats)]
        return self.add("throughput", row_id, label, "ops/s", statistics.median(rates), higher_is_better=True,
                        extra={"runs": rates})

    def median(self, measure: Callable[[], float]) -> float:
        return statistics.median(measure() for _ in range(self.settings.repeats))


def shared(call: Callable[[], object]) -> Factory:
    """Every thread calls the same ``call`` (one enforcer shared by the threads, as an agent would)."""
    return lambda: (call, _nothing)


def _nothing() -> None:
    pass


def time_once(call: Callable[[], object]) -> float:
    """Seconds of one call."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start
