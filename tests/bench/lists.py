"""List-growth rows: a decision's cost against the size of the policy's lists, every size timed in turn.

Three families, each against its smallest member, measured interleaved (the
smallest, the next, the largest, the smallest, ...) so that load drifting on a
shared machine hits every size alike; timed one after the other, 100k-entry
rows read 1.3-1.7x the 10-entry ones from noise alone:

- ``lookup/<N>/<type>``: the probe of each action type against policies of N entries in all;
- ``globs/<N>/<allowed|denied>``: a tool allowed by the last of N tool globs, and one no glob matches;
- ``cidrs/<N>/<allowed|denied>``: an IPv4 host in the last of N allowed CIDRs, and one in none of them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from sekuire.compiler import Policy
from sekuire.runtime import EmbeddedEngine, PolicyEnforcer

from .core import Bench, progress
from .stats import time_interleaved
from .workload import AGENT_ID, CIDR_PROBES, GLOB_PROBES, enforce_call

__all__ = ["lookups"]

#: The issue's bound on a decision's cost at the largest size of a family against its smallest.
GROWTH_BOUND = 1.1


def lookups(bench: Bench) -> None:
    settings = bench.settings
    sizes = sorted(settings.lookup_sizes)
    enforcers = {size: _enforcer(bench, bench.workload.policy(size)) for size in sizes}
    for kind in settings.actions:
        _family(bench, f"lookup/{{}}/{kind}", "{:,}-entry policy, " + kind,
                {size: enforce_call(enforcer, kind) for size, enforcer in enforcers.items()},
                aim_at=max(sizes), what="no list scans")
    globs = {count: _enforcer(bench, bench.workload.glob_policy(count)) for count in sorted(settings.glob_counts)}
    cidrs = {count: _enforcer(bench, bench.workload.cidr_policy(count)) for count in sorted(settings.cidr_counts)}
    for outcome in ("allowed", "denied"):
        name = GLOB_PROBES[outcome]
        _family(bench, f"globs/{{}}/{outcome}", f"{{:,}} tool globs, tool {name!r} {outcome}",
                {count: _check(enforcer, {"type": "tool", "name": name}, outcome) for count, enforcer in globs.items()},
                aim_at=10_000, what="globs looked up by prefix")
        host = CIDR_PROBES[outcome]
        _family(bench, f"cidrs/{{}}/{outcome}", f"{{:,}} allowed CIDRs, host {host} {outcome}",
                {count: _check(enforcer, {"type": "network", "host": host}, outcome) for count, enforcer in cidrs.items()},
                aim_at=1_000, what="CIDRs looked up by prefix length")


def _enforcer(bench: Bench, policy: Policy) -> PolicyEnforcer:
    engine = EmbeddedEngine.from_policy(policy)
    bench.later(engine.close)
    return PolicyEnforcer(policy, engine=engine, cache=False, agent_id=AGENT_ID)


def _check(enforcer: PolicyEnforcer, action: dict[str, str], outcome: str) -> Callable[[], object]:
    """``enforcer.check(action)``, after making sure it decides as the row's name says."""
    if ("allowed" if enforcer.check(action).allow else "denied") != outcome:
        raise RuntimeError(f"the probe {action} is not {outcome}")
    return functools.partial(enforcer.check, action)


def _family(bench: Bench, row_id: str, label: str, calls: dict[int, Callable[[], object]], *, aim_at: int,
            what: str) -> None:
    """Time ``calls`` (size -> call) in turn; each row against the smallest size, the bound at ``aim_at``."""
    sizes = sorted(calls)
    progress("  " + row_id.format("*"))
    summaries = time_interleaved([calls[size] for size in sizes], warmup=bench.settings.warmup,
                                 iterations=bench.settings.cold_iterations)
    anchor = None
    for size, summary in zip(sizes, summaries, strict=True):
        row = bench.summary("lookups", row_id.format(size), label.format(size) + " (sizes timed in turn)", summary)
        if anchor is None:
            anchor = row
            continue
        ratio = row.compare(anchor)
        if size == aim_at or (size == sizes[-1] and aim_at > sizes[-1]):
            row.aim(f"at most {GROWTH_BOUND}x the cost at {sizes[0]:,} ({what})", ratio <= GROWTH_BOUND)
