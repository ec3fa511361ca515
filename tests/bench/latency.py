"""Latency rows: the real OPA's anchors, the embedded and external engines, a decision-log event, batch checks.

Rows that compare with an anchor measure the anchor first if this run has not
(``--only embedded`` still measures the OPA REST and ``opa bench`` rows it needs).
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sekuire.runtime import FileSink, OPAEngine

from .core import Bench, progress
from .opa import RestClient, opa_bench
from .report import Row
from .stats import time_interleaved
from .workload import CACHEABLE_TYPES, enforce_call, engine_input

__all__ = ["anchors", "batch", "bench_anchor", "decision_log", "embedded", "external", "rest_anchor"]


# -- 1. anchors ----------------------------------------------------------------------------------------------


def anchors(bench: Bench) -> None:
    for kind in bench.settings.actions:
        rest_anchor(bench, kind)
        bench_anchor(bench, kind)


def rest_anchor(bench: Bench, kind: str) -> Row:
    row = bench.report.get(f"opa-rest/{kind}")
    if row is not None:
        return row
    client = RestClient(bench.server.port, bench.workload.decision_path)
    try:
        input_ = engine_input(kind)
        if client.decide(input_).get("allow") is not True:
            raise RuntimeError(f"OPA denies the {kind} probe action")
        return bench.latency(
            "anchors",
            f"opa-rest/{kind}",
            f"OPA REST {kind}: POST /v1/data/.../decision on a keep-alive http.client connection",
            functools.partial(client.decide, input_),
            bench.settings.rest_iterations,
        )
    finally:
        client.close()


def bench_anchor(bench: Bench, kind: str) -> Row:
    row = bench.report.get(f"opa-bench/{kind}")
    if row is not None:
        return row
    rest = rest_anchor(bench, kind)
    progress(f"  opa-bench/{kind}")
    bundle = bench.workload.bundle(bench.settings.main_size)
    result = opa_bench(bench.opa, bundle, bench.workload.input_file(kind), bench.workload.decision_path)
    row = bench.add(
        "anchors",
        f"opa-bench/{kind}",
        f"`opa bench` {kind}: OPA in-process evaluation",
        "us",
        result["ns_per_op"] / 1000,
        p99=result["eval_p99_ns"] / 1000,
        n=int(result["n"]),
        extra=result,
        note="mean ns/op; p99 is OPA's query-eval timer",
    )
    row.compare(rest)
    return row


# -- 2. embedded ---------------------------------------------------------------------------------------------


def embedded(bench: Bench) -> None:
    anchor_rows = {kind: (rest_anchor(bench, kind), bench_anchor(bench, kind)) for kind in bench.settings.actions}
    cold = bench.enforcer(cache=False)
    warm = bench.enforcer(cache=True)
    for kind, (rest, opa) in anchor_rows.items():
        row = bench.latency(
            "embedded", f"embedded-cold/{kind}", f"{kind}, decision cache off", enforce_call(cold, kind),
            bench.settings.cold_iterations,
        )
        row.aim("at least 20x faster than OPA REST", row.compare(rest) <= 1 / 20)
        row.aim("at least 5x faster than opa bench", row.compare(opa) <= 1 / 5)
    for kind in (kind for kind in anchor_rows if kind in CACHEABLE_TYPES):
        call = enforce_call(warm, kind)
        call()  # fills the cache: every timed call is a hit
        row = bench.latency(
            "embedded", f"embedded-warm/{kind}", f"{kind}, decision cache on (hits)", call,
            bench.settings.warm_iterations,
        )
        row.aim("at least 300x faster than OPA REST", row.compare(anchor_rows[kind][0]) <= 1 / 300)
    if warm.cache is not None and warm.cache.misses > len(CACHEABLE_TYPES):
        raise RuntimeError(f"the warm rows missed the decision cache {warm.cache.misses} times")


# -- 2b. the cost of a decision-log event ---------------------------------------------------------------------


class _Discard:
    """A sink that keeps nothing: the cost of making the event, without any I/O."""

    def emit(self, event: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def decision_log(bench: Bench) -> None:
    """A tool decision (cache off) without a decision log, with an event made and dropped, and with an event
    appended to a file: timed in turn, so the differences are the event's cost."""
    with tempfile.TemporaryDirectory(prefix="sekuire-bench-log-") as directory:
        sink = FileSink(Path(directory) / "decisions.jsonl")
        try:
            calls = {
                "none": enforce_call(bench.enforcer(cache=False), "tool"),
                "event": enforce_call(bench.enforcer(cache=False, decision_log=_Discard()), "tool"),
                "file": enforce_call(bench.enforcer(cache=False, decision_log=sink), "tool"),
            }
            progress("  decision-log/*")
            plain, event, file = time_interleaved(
                list(calls.values()), warmup=bench.settings.warmup, iterations=bench.settings.cold_iterations
            )
        finally:
            sink.close()
        lines = (Path(directory) / "decisions.jsonl").read_text(encoding="utf-8").splitlines()
    if not lines or json.loads(lines[-1]).get("result", {}).get("allow") is not True:
        raise RuntimeError("the file sink wrote no decision event")
    anchor = bench.summary("decision_log", "decision-log/none", "tool, cache off, no decision log (timed in turn)", plain)
    for row_id, label, summary in (
        ("decision-log/event", "tool, cache off, each decision's event made (OPA's format) and dropped", event),
        ("decision-log/file", "tool, cache off, each decision's event appended to a JSON-lines file", file),
    ):
        row = bench.summary("decision_log", row_id, label, summary)
        row.compare(anchor)
        row.extra["event_cost_us"] = summary.median - plain.median


# -- 3. external ---------------------------------------------------------------------------------------------


def external(bench: Bench) -> None:
    """Each row is timed interleaved with its own raw REST anchor, call for call, on the same OPA."""
    client = RestClient(bench.server.port, bench.workload.decision_path)
    with OPAEngine(bench.server.url) as engine:
        enforcer = bench.enforcer(engine, cache=False)
        for kind in bench.settings.actions:
            progress(f"  external/{kind}")
            anchor, result = time_interleaved(
                [functools.partial(client.decide, engine_input(kind)), enforce_call(enforcer, kind)],
                warmup=bench.settings.warmup,
                iterations=bench.settings.rest_iterations,
            )
            paired = bench.summary(
                "external", f"opa-rest-paired/{kind}", f"OPA REST {kind}, timed in turn with the row below", anchor
            )
            row = bench.summary("external", f"external/{kind}", f"{kind}, decision cache off", result)
            row.aim("at most 1.10x OPA REST", row.compare(paired) <= 1.10)
    client.close()


# -- 8. batch checks (issue 13.5) ------------------------------------------------------------------------------


def batch(bench: Bench) -> None:
    enforcer = bench.enforcer(cache=False)
    names = [f"tool_{index:06d}" for index in range(190)] + ["file_delete", "shell"] * 5  # 190 allowed, 10 denied
    iterations = max(20, bench.settings.cold_iterations // 50)
    single = bench.latency("batch", "batch/20-singles", "20 single tool decisions (cache off)",
                           lambda: [enforcer.check({"type": "tool", "name": n}) for n in names[:20]], iterations)
    actions = [{"type": "tool", "name": name} for name in names]
    many = bench.latency("batch", "batch/check-many-200", "check_many of 200 tool names (cache off)",
                         lambda: enforcer.check_many(actions), iterations)
    many.aim("costs less than 20 single decisions", many.compare(single) < 1)
