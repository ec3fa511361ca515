"""Batch checks: many actions decided in order without raising, tool names in one engine query (``tool_listing``).

``PolicyEnforcer.check_many`` gives each action the decision ``check`` would
give. Tool and capability actions without arguments that the cache does not
already answer are asked together, one query per kind: the library's
``tool_listing`` entry point returns which names the tool rules allow and the
violations of the others (``[name, rule, message]``), so a deny keeps its
violations without a query of its own. Every other action is decided one by
one. Every decision is counted, cached and logged as ``check`` would (the
logged result of a batched decision is the one the decision entry point gives).
The batch is not trusted when extension modules are in the bundle (they decide
on a whole action: ``exact`` is false), when a name holds a control character,
or when its query fails or answers off-contract: then every action is decided
on its own."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Protocol

from .decision import Decision, Violation
from .engine import sibling_path
from .errors import EngineError, EngineResponseError, InvalidActionError
from .normalize import MAX_VALUE_LENGTH, normalize_action

__all__ = ["check_many", "listing_path"]


class _Query(Protocol):
    input: dict[str, Any]
    revision: str
    key: Hashable | None


class _Enforcer(Protocol):
    path: str
    engine: Any
    cache: Any
    decision_log: Any
    counters: Any

    def check(self, action: Mapping[str, Any]) -> Decision: ...

    def _query(self, action: Mapping[str, Any], cacheable: bool) -> tuple[Any, Decision | None]: ...

    def _record(self, query: Any, decision: Decision, *, fresh: bool = False, failed: bool = False) -> Decision: ...


def listing_path(decision_path: str) -> str:
    """The ``tool_listing`` entry point beside a workspace's ``decision``."""
    return sibling_path(decision_path, "tool_listing")


def check_many(enforcer: _Enforcer, actions: Sequence[Mapping[str, Any]]) -> list[Decision]:
    """The decision for each of ``actions``, in order; bad actions are ``input.invalid`` denies, nothing raises."""
    invalid: dict[int, Decision] = {}
    staged: dict[int, tuple[Any, Decision, bool]] = {}  # index -> (query, decision, fresh), recorded in order
    pending: dict[tuple[str, str], list[tuple[int, Any]]] = {}
    query_of = enforcer._query
    # Nothing to cache or log: no query object per action, a decision is only counted (a measured hot loop).
    lean = enforcer.cache is None and enforcer.decision_log is None
    for index, action in enumerate(actions):
        # The common clean case without a call; anything else is normalised.
        if (type(action) is dict and len(action) == 2 and (kind := action.get("type")) in _KINDS
                and type(name := action.get("name")) is str and 0 < len(name) <= MAX_VALUE_LENGTH
                and name.isprintable()):
            if lean:
                pending.setdefault((kind, name), []).append((index, None))
                continue
            normalized = {"type": kind, "name": name}
        else:
            try:
                normalized = normalize_action(action)
            except InvalidActionError as exc:
                invalid[index] = Decision(False, (Violation("input.invalid", str(exc)),))
                continue
            if normalized["type"] not in _KINDS or "args" in normalized:
                continue  # decided on its own below
        query, cached = query_of(normalized, True)
        if cached is not None:
            staged[index] = (query, cached, False)
        else:
            pending.setdefault((normalized["type"], normalized["name"]), []).append((index, query))
    for kind in _KINDS:
        names = sorted(name for of_kind, name in pending if of_kind == kind)
        listed = _listing(enforcer, kind, names) if names else None
        for name, decision in (listed or {}).items():
            for index, query in pending[(kind, name)]:
                staged[index] = (query, decision, True)
    results = []
    count = enforcer.counters.count
    for index, action in enumerate(actions):
        if index in staged:
            query, decision, fresh = staged[index]
            if query is None:
                count(decision.allow)
                results.append(decision)
            else:
                results.append(enforcer._record(query, decision, fresh=fresh))
        else:
            results.append(invalid[index] if index in invalid else enforcer.check(action))
    return results


_KINDS = ("tool", "capability")


def _listing(enforcer: _Enforcer, kind: str, names: list[str]) -> dict[str, Decision] | None:
    """Each name's decision from one ``tool_listing`` query, or None when the batch answer cannot be used."""
    evaluate: Callable[[str, Mapping[str, Any]], Any] = enforcer.engine.evaluate
    try:
        answer = evaluate(listing_path(enforcer.path), {"names": names, "kind": kind})
    except EngineError:
        return None
    if not isinstance(answer, dict) or answer.get("exact") is not True:
        return None
    allowed, denied, policy = answer.get("allowed"), answer.get("denied"), answer.get("policy")
    if not (isinstance(allowed, list) and isinstance(denied, list) and isinstance(policy, dict)):
        return None
    allow = Decision(True, (), policy, {"allow": True, "violations": [], "policy": policy})
    decisions = dict.fromkeys((name for name in allowed if isinstance(name, str)), allow)
    violations: dict[str, list[dict[str, Any]]] = {}
    for item in denied:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)):
            return None
        violations.setdefault(item[0], []).append({"rule": item[1], "message": item[2]})
    try:
        for name, listed in violations.items():
            decisions[name] = Decision.from_result({"allow": False, "violations": listed, "policy": policy})
    except EngineResponseError:
        return None
    # Only the names asked about, each decided exactly once (allowed and denied would contradict each other).
    if decisions.keys() != set(names) or len(decisions) != len(allowed) + len(violations):
        return None
    return decisions
