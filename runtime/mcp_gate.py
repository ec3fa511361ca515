"""The MCP tool gate: which of an MCP server's tools a policy lets an agent see and call.

:class:`ToolGate` holds the two decisions an MCP gate makes, on top of a
:class:`~sekuire.runtime.PolicyEnforcer` (DESIGN.md section 4, action
``{"type": "tool", "name"}``):

- *listing*: a tool is shown only when the policy allows it. Listing is not an
  attempt to use a tool, so it is a dry run (:meth:`PolicyEnforcer.acheck`): each
  decision is logged like any other, ``on_violation`` is not called. A name the
  runtime refuses as input (empty, NUL) is hidden. In warn-only mode nothing is
  hidden (the calls would go through anyway), and each tool that would be is
  logged as a warning.
- *calling*: :meth:`PolicyEnforcer.aenforce_tool`, so the decision is logged,
  ``on_violation`` runs for each violation and a deny raises
  :class:`PolicyViolationError` before anything reaches the server.

:func:`gate_session` puts the gate around an MCP client session of the official
SDK (``mcp.ClientSession`` or ``mcp.Client``): ``list_tools`` comes back
filtered, ``call_tool`` of a denied tool raises. The stdio proxy built on the
same gate is :mod:`sekuire.runtime.mcp_proxy`.

This module imports nothing of the MCP SDK: it works on any object with a
``name`` (``mcp.types.Tool``) and any result with a ``tools`` list.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, Self, TypeVar

from .decision import Decision, Violation
from .errors import InvalidActionError

__all__ = ["GatedSession", "INVALID_INPUT", "SessionLike", "ToolEnforcer", "ToolGate", "gate_session"]

logger = logging.getLogger(__name__)

#: The rule of the deny that stands for a tool name the runtime refuses as input (as the Rego names it).
INVALID_INPUT = "input.invalid"

T = TypeVar("T")


class ToolEnforcer(Protocol):
    """What the gate needs of an enforcer (a :class:`~sekuire.runtime.PolicyEnforcer`)."""

    warn_only: bool

    async def acheck_many(self, actions: Sequence[Mapping[str, Any]]) -> list[Decision]: ...

    async def aenforce_tool(self, name: str) -> Decision: ...


class ToolGate:
    """Per-tool policy decisions for an MCP gate: which tools to show, and whether a call may go through."""

    def __init__(self, enforcer: ToolEnforcer) -> None:
        self.enforcer = enforcer

    async def decisions(self, names: Iterable[str]) -> dict[str, Decision]:
        """The listing decision of each distinct name, without raising (a dry run, logged): one batch check."""
        distinct = list(dict.fromkeys(names))
        decisions = await self.enforcer.acheck_many([{"type": "tool", "name": name} for name in distinct])
        return dict(zip(distinct, decisions, strict=True))

    async def visible(self, tools: Sequence[T]) -> list[T]:
        """The tools the policy allows, in their order; ``tools`` are objects with a ``name`` or mappings with one."""
        names = [_tool_name(tool) for tool in tools]
        decided = await self.decisions(name for name in names if name is not None)
        kept = []
        for tool, name in zip(tools, names):
            decision = decided.get(name) if name is not None else None
            if decision is not None and decision.allow:
                kept.append(tool)
                continue
            reason = decision.violations[0] if decision is not None else Violation(INVALID_INPUT, "the tool has no name")
            if self.enforcer.warn_only:
                logger.warning("WARN-ONLY: listing tool %r, which the policy denies (%s: %s)", name, reason.rule, reason.message)
                kept.append(tool)
            else:
                logger.info("hiding tool %r: %s: %s", name, reason.rule, reason.message)
        return kept

    async def authorize(self, name: object) -> Decision:
        """Enforce a call of tool ``name``: the decision when it may go through.

        Raises :class:`PolicyViolationError` for a deny (after logging and
        ``on_violation``) and :class:`InvalidActionError` for a name that is not a
        usable tool name. In warn-only mode a denied call comes back as its
        (denying) decision and the caller goes on.
        """
        if not isinstance(name, str):
            raise InvalidActionError(f"the tool name must be a string, not {type(name).__name__}")
        return await self.enforcer.aenforce_tool(name)


def _tool_name(tool: object) -> str | None:
    name = tool.get("name") if isinstance(tool, Mapping) else getattr(tool, "name", None)
    return name if isinstance(name, str) else None


class SessionLike(Protocol):
    """The part of ``mcp.ClientSession`` / ``mcp.Client`` the gate wraps."""

    async def list_tools(self, *args: Any, **kwargs: Any) -> Any: ...

    async def call_tool(self, name: str, *args: Any, **kwargs: Any) -> Any: ...


class GatedSession:
    """An MCP client session whose ``list_tools`` and ``call_tool`` pass through a :class:`ToolGate`.

    Everything else (``initialize``, resources, prompts, ``send_ping``, ...) is the
    wrapped session's own attribute. Denied calls raise
    :class:`~sekuire.runtime.PolicyViolationError` (rule and reason) and never
    reach the server.
    """

    def __init__(self, session: SessionLike, gate: ToolGate) -> None:
        self.session = session
        self.gate = gate

    async def list_tools(self, *args: Any, **kwargs: Any) -> Any:
        """The session's ``list_tools`` result (each page, when paginated) with denied tools removed."""
        result = await self.session.list_tools(*args, **kwargs)
        tools = getattr(result, "tools", None)
        if not isinstance(tools, list):
            raise InvalidActionError(f"list_tools returned {type(result).__name__}, not a result with a tools list")
        kept = await self.gate.visible(tools)
        if len(kept) == len(tools):
            return result
        copy = getattr(result, "model_copy", None)
        if callable(copy):  # pydantic results of the SDK: the caller's object is left as it was
            return copy(update={"tools": kept})
        result.tools = kept
        return result

    async def call_tool(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Enforce the policy on tool ``name``, then call it; a deny raises before the server sees anything."""
        await self.gate.authorize(name)
        return await self.session.call_tool(name, *args, **kwargs)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.session, attribute)

    async def __aenter__(self) -> Self:
        """Enter the wrapped session (``async with gate_session(ClientSession(r, w), enforcer) as session``)."""
        await self.session.__aenter__()  # type: ignore[attr-defined]
        return self

    async def __aexit__(self, *exc_info: object) -> Any:
        return await self.session.__aexit__(*exc_info)  # type: ignore[attr-defined]


def gate_session(session: SessionLike, enforcer: ToolEnforcer) -> GatedSession:
    """Put the policy gate around an MCP client session (``mcp.ClientSession`` or ``mcp.Client``)."""
    return GatedSession(session, ToolGate(enforcer))
