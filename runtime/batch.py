"""Batch checks: many actions decided in order without raising, tool names in one engine query (``tool_listing``).

``PolicyEnforcer.check_many`` gives each action the decision ``check`` would
give. Tool and capability actions without arguments that the cache does not
already answer are asked together: the library's ``tool_listing`` entry point
returns which names the tool rules allow, in one query. Names it does not allow
(and every other action) are decided one by one, so a deny keeps its
violations. Every decision is counted, cached and logged as ``check`` would
(the logged result of a batched allow is the allow the decision entry point
gives). The batch is not trusted when extension modules are in the bundle (they
decide on a whole action: ``exact`` is false) or when its query fails: then
every action is decided on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Protocol

from .decision import Decision, Violation
from .engine import sibling_path
from .errors import EngineError, InvalidActionError
from .normalize import normalize_action

__all__ = ["check_many", "listing_path"]


class _Query(Protocol):
    input: dict[str, Any]
    revision: str
    key: Hashable | None


class _Enforcer(Protocol):
    path: str
    engine: Any

    def check(self, action: Mapping[str, Any]) -> Decision: ...

    def _query(self, action: Mapping[str, Any], cacheable: bool) -> tuple[Any, Decision | None]: ...

    def _record(self, query: Any, decision: Decision, *, fresh: bool = False, failed: bool = False) -> Decision: ...


def listing_path(decision_path: str) -> str:
    """The ``tool_listing`` entry point beside a workspace's ``decision``."""
    return sibling_path(decision_path, "tool_listing")


def check_many(enforcer: _Enforcer, actions: Sequence[Mapping[str, Any]]) -> list[Decision]:
    """The decision for each of ``actions``, in order; bad actions are ``input.invalid`` denies, nothing raises."""
    results: list[Decision | None] = [None] * len(actions)
    pending: dict[str, list[tuple[int, Any]]] = {}
    for index, action in enumerate(actions):
        try:
            normalized = normalize_action(action)
        except InvalidActionError as exc:
            results[index] = Decision(False, (Violation("input.invalid", str(exc)),))
            continue
        if normalized["type"] in ("tool", "capability") and "args" not in normalized:
            query, cached = enforcer._query(normalized, True)
            if cached is not None:
                results[index] = enforcer._record(query, cached)
            else:
                pending.setdefault(normalized["name"], []).append((index, query))
    allowed = _allowed_names(enforcer, sorted(pending)) if pending else None
    for name, waiting in pending.items():
        for index, query in waiting:
            if allowed is not None and name in allowed[0]:
                results[index] = enforcer._record(query, _allow(allowed[1]), fresh=True)
    return [decision if decision is not None else enforcer.check(actions[index])
            for index, decision in enumerate(results)]


def _allow(policy: Mapping[str, Any]) -> Decision:
    return Decision(True, (), dict(policy), {"allow": True, "violations": [], "policy": dict(policy)})


def _allowed_names(enforcer: _Enforcer, names: list[str]) -> tuple[set[str], Mapping[str, Any]] | None:
    """The names the tool rules allow and the policy metadata, or None when the batch answer cannot be used."""
    evaluate: Callable[[str, Mapping[str, Any]], Any] = enforcer.engine.evaluate
    try:
        answer = evaluate(listing_path(enforcer.path), {"names": names})
    except EngineError:
        return None
    if not isinstance(answer, dict) or answer.get("exact") is not True:
        return None
    listed, policy = answer.get("allowed"), answer.get("policy")
    if not isinstance(listed, list) or not isinstance(policy, dict):
        return None
    return {name for name in listed if isinstance(name, str)} & set(names), policy
