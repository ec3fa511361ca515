"""Explained decisions: the library's ``explain`` entry point, asked only when a caller wants the why.

``explain`` answers like ``decision`` and adds, to each violation, the policy
entry behind it (``entry``: the blocked pattern that matched, or the setting
whose value or absence decided, such as ``permissions.network.require_tls``)
and the allowed entries that matched (``allowed_by``). It is a separate entry
point so that its cost (finding *which* entry matched, not only whether one
did) never reaches ``decision``, the hot path. Explained decisions are not
cached, counted, logged or passed to callbacks: they answer a question about
the policy, they do not let an action run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from .decision import Decision
from .engine import Engine, sibling_path
from .errors import EngineError
from .normalize import normalize_action

__all__ = ["aexplain", "explain"]


class _Enforcer(Protocol):
    path: str
    engine: Engine

    def _dry_run(self, action: dict[str, Any]) -> dict[str, Any]: ...

    @property
    def _context(self) -> dict[str, Any]: ...


def _input(enforcer: _Enforcer, action: Mapping[str, Any]) -> dict[str, Any]:
    return {"action": enforcer._dry_run(normalize_action(action)), "context": enforcer._context}


def explain(enforcer: _Enforcer, action: Mapping[str, Any]) -> Decision:
    """The explained decision for ``action``; an engine failure is the ``engine.unavailable`` deny."""
    query = _input(enforcer, action)
    try:
        return Decision.from_result(enforcer.engine.evaluate(sibling_path(enforcer.path, "explain"), query))
    except EngineError as exc:
        return Decision.failure(str(exc))


async def aexplain(enforcer: _Enforcer, action: Mapping[str, Any]) -> Decision:
    """Async twin of :func:`explain`."""
    query = _input(enforcer, action)
    try:
        return Decision.from_result(await enforcer.engine.aevaluate(sibling_path(enforcer.path, "explain"), query))
    except EngineError as exc:
        return Decision.failure(str(exc))
