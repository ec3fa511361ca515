"""The memo in front of normalisation and the lock-free decision cache: faster, and never a different decision."""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from typing import Any

import pytest
from sekuire.runtime import DecisionCache, EmbeddedEngine, PolicyEnforcer, PolicyViolationError

from .security_support import unsigned_policy


class CountingEngine(EmbeddedEngine):
    """The embedded engine, counting the queries that reach it."""

    calls = 0

    def evaluate(self, path: str, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
        type(self).calls += 1
        return super().evaluate(path, input)


@pytest.fixture()
def policy(envelope_vectors):
    """The vector policy with audit logging off (with it on, every decision is logged: no memo)."""
    content = copy.deepcopy(envelope_vectors["valid"]["content"])
    content.setdefault("compliance", {})["require_audit_logging"] = False
    return unsigned_policy(content)


@pytest.fixture()
def counted(policy):
    CountingEngine.calls = 0
    engine = CountingEngine.from_policy(policy)
    yield engine
    engine.close()


def test_a_repeated_allow_skips_normalisation_and_the_engine(policy, counted, monkeypatch):
    from sekuire.runtime import enforcer as module

    normalised: list[Mapping[str, Any]] = []
    real = module.normalize_action
    monkeypatch.setattr(module, "normalize_action", lambda action: normalised.append(action) or real(action))
    enforcer = PolicyEnforcer(policy, engine=counted)
    first = enforcer.enforce_tool("web_search")
    for _ in range(50):
        assert enforcer.enforce_tool("web_search") is first
    assert CountingEngine.calls == 1 and len(normalised) == 1
    assert enforcer.enforce_network("api.openai.com").allow and enforcer.enforce_network("api.openai.com").allow
    assert CountingEngine.calls == 2


def test_denies_are_never_memoised(policy, counted):
    seen: list[str] = []
    enforcer = PolicyEnforcer(policy, engine=counted, on_violation=lambda rule, _: seen.append(rule))
    for _ in range(3):
        with pytest.raises(PolicyViolationError):
            enforcer.enforce_tool("shell")
    assert len(seen) == 3  # every deny reaches the callback (the decision cache answers, the memo does not)


def test_the_memo_counts_every_decision(policy, counted):
    enforcer = PolicyEnforcer(policy, engine=counted)
    for _ in range(5):
        enforcer.enforce_tool("web_search")
    assert enforcer.counters.snapshot().allowed == 5


def test_no_memo_when_every_decision_is_logged(policy, counted):
    events: list[Mapping[str, Any]] = []

    class Sink:
        def emit(self, event: Mapping[str, Any]) -> None:
            events.append(event)

        def close(self) -> None:
            pass

    enforcer = PolicyEnforcer(policy, engine=counted, decision_log=Sink())
    for _ in range(4):
        enforcer.enforce_tool("web_search")
    assert len(events) == 4


def test_arguments_that_are_not_exact_strings_bypass_the_memo_and_decide_the_same(policy, counted):
    class Sneaky(str):
        def __eq__(self, other: object) -> bool:  # equal to everything: must never match a memo entry
            return True

        __hash__ = str.__hash__

    enforcer = PolicyEnforcer(policy, engine=counted)
    assert enforcer.enforce_tool("web_search").allow
    with pytest.raises(PolicyViolationError):
        enforcer.enforce_tool(Sneaky("shell"))


def test_the_cache_reads_without_a_lock_yet_keeps_revisions_apart():
    cache: DecisionCache[int] = DecisionCache(maxsize=64)
    cache.get("r1", "x")
    cache.put("r1", "x", 1)
    errors: list[str] = []

    def reader() -> None:
        for _ in range(20_000):
            value = cache.get("r1", "x")
            if value not in (None, 1):
                errors.append(f"r1 read {value}")

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for index in range(2_000):  # writers churn the table (FIFO evictions) while readers read
        cache.put("r1", f"k{index}", 2)
    for thread in threads:
        thread.join()
    assert errors == []
    assert cache.get("r2", "x") is None  # a new revision empties the cache
    cache.put("r1", "x", 1)  # decided under the old revision: dropped
    assert cache.get("r2", "x") is None and len(cache) == 0


def test_the_memo_never_holds_more_than_4096_allows(policy):
    """Bounded (cleared when full): a mutant that let it hold 4,097 survived."""
    enforcer = PolicyEnforcer(policy)
    for index in range(4097):
        assert enforcer.enforce_tool(f"file_{index}").allow  # file_* is allowed: each name a new allow
        assert len(enforcer._memo._allows) <= 4096
    assert len(enforcer._memo._allows) == 1  # cleared at 4,096, then the 4,097th kept
