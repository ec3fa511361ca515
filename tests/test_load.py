"""Load: many decisions from eight threads, every one checked, and rate limits that are never exceeded.

The mix is every action of the bypass corpus under coding-assistant whose
decision the spec fixes (about 300 distinct actions, allowed and denied, with
the hand-written expectations of tests/data/bypass_corpus.json), interleaved
with rate-limit enforcements (every tenth call; requests of 1 and token counts
of 1 to 500) that consume quota. The rate limiter's clock is frozen, so "never
exceeded" is exact: no more than 60 requests and 40,000 tokens are ever allowed,
and the limiter counts exactly what was allowed.

- embedded engine: 100,000 decisions with the decision cache (what an agent
  repeating its actions gets), then 20,000 with the cache off (every one
  evaluated by regorus);
- real OPA (``opa run --server`` on loopback with the signed bundle): 10,000
  decisions, uncached, each an HTTP query.

Nothing is timed in an assertion; the rates are recorded as test properties.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sekuire.compiler import Policy
from sekuire.runtime import (
    Decision,
    OPAEngine,
    PolicyEnforcer,
    PolicyViolationError,
    RateLimiter,
)

from .security_support import load_example, serve_bundles, signed_bundle

CORPUS = Path(__file__).parent / "data" / "bypass_corpus.json"
THREADS = 8
RATE_EVERY = 10
LIMITS = {"request": 60, "token": 40_000}  # coding-assistant's per-minute limits (the hourly ones are larger)


@dataclass
class Tally:
    """What the threads saw; ``wrong`` and ``errors`` keep the first few examples."""

    decisions: int = 0
    wrong: int = 0
    errors: int = 0
    examples: list[Any] = field(default_factory=list)
    allowed: Counter[str] = field(default_factory=Counter)  # rate-limit amounts allowed, per kind
    denied: Counter[str] = field(default_factory=Counter)  # rate-limit denies, per rule
    lock: threading.Lock = field(default_factory=threading.Lock)

    def merge(self, other: Tally) -> None:
        with self.lock:
            self.decisions += other.decisions
            self.wrong += other.wrong
            self.errors += other.errors
            self.examples += other.examples
            self.allowed.update(other.allowed)
            self.denied.update(other.denied)


@pytest.fixture(scope="module")
def coding() -> Policy:
    return load_example("coding-assistant")


@pytest.fixture(scope="module")
def mix() -> list[tuple[dict[str, Any], tuple[bool, tuple[str, ...]]]]:
    """(action, (allow, sorted rule ids)) for every decided, non-rate-limit corpus case of coding-assistant."""
    cases = json.loads(CORPUS.read_text(encoding="utf-8"))
    chosen = [(case["action"], (case["expect"]["allow"], tuple(case["expect"]["rules"]))) for case in cases
              if case["policy"] == "coding-assistant" and "allow" in case["expect"]
              and case["category"] != "rate_limit"]
    assert len(chosen) >= 250 and {allow for _, (allow, _) in chosen} == {True, False}
    return chosen


def _frozen_limiter() -> RateLimiter:
    return RateLimiter(clock=lambda: 1_000.0)


def _worker(enforcer: PolicyEnforcer, mix: list[Any], count: int, seed: int) -> Tally:
    tally = Tally()
    rng = random.Random(seed)
    for i in range(count):
        try:
            if i % RATE_EVERY == RATE_EVERY - 1:
                kind = rng.choice(("request", "token"))
                amount = 1 if kind == "request" else rng.randint(1, 500)
                decision = _rate(enforcer, kind, amount)
                if decision.allow:
                    tally.allowed[kind] += amount
                else:
                    tally.denied[",".join(v.rule for v in decision.violations)] += 1
            else:
                action, expected = mix[rng.randrange(len(mix))]
                decision = enforcer.check(action)
                got = (decision.allow, tuple(sorted(v.rule for v in decision.violations)))
                if got != expected:
                    tally.wrong += 1
                    tally.examples.append((action, got, expected))
            tally.decisions += 1
        except Exception as exc:  # counted, not raised: the test reports every kind of failure at once
            tally.errors += 1
            tally.examples.append(f"{type(exc).__name__}: {exc}")
        del tally.examples[5:]
    return tally


def _rate(enforcer: PolicyEnforcer, kind: str, amount: int) -> Decision:
    """enforce_rate_limit, with its deny (a PolicyViolationError) read back as the decision it carries."""
    try:
        return enforcer.enforce_rate_limit(kind, amount)
    except PolicyViolationError as exc:
        return exc.decision


def _run(enforcer: PolicyEnforcer, mix: list[Any], total: int) -> tuple[Tally, float]:
    tally = Tally()
    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        for part in pool.map(lambda seed: _worker(enforcer, mix, total // THREADS, seed), range(THREADS)):
            tally.merge(part)
    return tally, time.perf_counter() - started


def _check(tally: Tally, total: int, enforcer: PolicyEnforcer) -> None:
    assert (tally.decisions, tally.errors, tally.wrong) == (total, 0, 0), tally.examples
    # Rate limits: never more than the limit, and the limiter counted exactly what was allowed.
    for kind, limit in LIMITS.items():
        usage = enforcer.rate_limiter.usage((enforcer.workspace_id, enforcer.agent_id, kind))
        assert tally.allowed[kind] <= limit and usage["minute"] == tally.allowed[kind]
    assert tally.allowed["request"] == LIMITS["request"]  # enough attempts to reach the limit exactly
    assert set(tally.denied) == {"rate_limit.exceeded"}


@pytest.fixture()
def record_rate(record_property):
    def record(name: str, decisions: int, seconds: float) -> None:
        record_property(f"{name}_decisions", decisions)
        record_property(f"{name}_per_second", round(decisions / seconds))

    return record


def test_100k_cached_and_20k_cold_embedded_decisions_from_eight_threads(coding, mix, record_rate):
    with PolicyEnforcer(coding, rate_limiter=_frozen_limiter()) as warm:
        tally, seconds = _run(warm, mix, 100_000)
        _check(tally, 100_000, warm)
        record_rate("embedded_cached", tally.decisions, seconds)
    with PolicyEnforcer(coding, cache=False, rate_limiter=_frozen_limiter()) as cold:
        tally, seconds = _run(cold, mix, 20_000)
        _check(tally, 20_000, cold)
        record_rate("embedded_cold", tally.decisions, seconds)


def test_10k_decisions_against_real_opa_from_eight_threads(opa_bin, tmp_path, coding, mix, record_rate):
    with serve_bundles(opa_bin, {"coding": signed_bundle(coding)}, tmp_path) as opa:
        with OPAEngine(opa.url) as engine:
            enforcer = PolicyEnforcer(coding, engine=engine, cache=False, rate_limiter=_frozen_limiter())
            tally, seconds = _run(enforcer, mix, 10_000)
            _check(tally, 10_000, enforcer)
            record_rate("opa", tally.decisions, seconds)
