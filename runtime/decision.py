"""The decision contract in Python: :class:`Decision`, its :class:`Violation` items, and the error that carries a deny."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..compiler.textsafe import MAX_MESSAGE, MAX_QUOTED, clean, redact_text
from .errors import EngineResponseError, SekuireRuntimeError

__all__ = ["AllowedBy", "Decision", "DecisionMemo", "ENGINE_UNAVAILABLE", "PolicyViolationError", "Violation"]

#: The rule of the deny that stands in for a decision the engine could not give.
ENGINE_UNAVAILABLE = "engine.unavailable"
# A quoted value in an engine's message ('...'), long enough to be cut.
_LONG_QUOTED = re.compile("'([^']{%d,})'" % (MAX_QUOTED + 1))


def _safe_message(message: str) -> str:
    """An engine's violation message made safe to show and log: userinfo removed, controls escaped, values cut."""
    message = redact_text(message)
    message = _LONG_QUOTED.sub(lambda m: "'" + clean(m.group(1), MAX_QUOTED) + "'", message)
    return clean(message, MAX_MESSAGE)


@dataclass(frozen=True)
class Violation:
    """One ``{rule, message}`` of a decision; both already escaped and cut for display.

    ``entry`` is the policy entry behind it (a blocked pattern, a setting such as
    ``permissions.network.require_tls``) when the decision was explained
    (:meth:`PolicyEnforcer.explain`), else None.
    """

    rule: str
    message: str
    entry: str | None = None


@dataclass(frozen=True)
class AllowedBy:
    """An allowed entry that matched an explained action: ``setting`` (``permissions.tools.allowed_tools``) and
    ``entry`` (``file_*``)."""

    setting: str
    entry: str


@dataclass(frozen=True)
class Decision:
    """A decision of the contract: ``allow`` iff there are no ``violations``; ``raw`` is the engine's object."""

    allow: bool
    violations: tuple[Violation, ...] = ()
    # Compared but not hashed (dicts are not hashable): decisions can go in sets.
    policy: Mapping[str, Any] = field(default_factory=dict, hash=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)
    #: The allowed entries that matched, when the decision was explained (:meth:`PolicyEnforcer.explain`).
    allowed_by: tuple[AllowedBy, ...] = ()

    @property
    def allowed(self) -> bool:
        """The seed's name for :attr:`allow`."""
        return self.allow

    @classmethod
    def from_result(cls, raw: Mapping[str, Any]) -> Decision:
        """Read an engine's answer; anything off-contract is an EngineResponseError (and so a deny)."""
        allow = raw.get("allow")
        items = raw.get("violations")
        if not isinstance(allow, bool) or not isinstance(items, list):
            raise EngineResponseError("the decision lacks a boolean 'allow' or a 'violations' array")
        violations = []
        for item in items:
            if not (isinstance(item, dict) and isinstance(item.get("rule"), str) and isinstance(item.get("message"), str)):
                raise EngineResponseError("a violation lacks a string 'rule' or 'message'")
            entry = item.get("entry")
            violations.append(Violation(clean(item["rule"], MAX_QUOTED), _safe_message(item["message"]),
                                        clean(entry, MAX_QUOTED) if isinstance(entry, str) else None))
        if allow == bool(violations):
            raise EngineResponseError(f"the decision says allow={allow} with {len(violations)} violation(s)")
        policy = raw.get("policy")
        listed = raw.get("allowed_by")
        allowed_by = () if listed is None else _allowed_by(listed)
        return cls(allow, tuple(violations), policy if isinstance(policy, dict) else {}, raw, allowed_by)

    @classmethod
    def failure(cls, reason: str) -> Decision:
        """The deny that stands in for a decision the engine could not give."""
        return cls(False, (Violation(ENGINE_UNAVAILABLE, _safe_message(reason)),))

    def explain(self) -> str:
        """A readable account: allow or deny, each violation with the entry behind it, the allowed entries.

        Entries are known when the decision comes from :meth:`PolicyEnforcer.explain` (or
        ``sekuire policy eval --explain``); other decisions show their rules and messages only.
        """
        lines = ["allow" if self.allow else "deny"]
        for violation in self.violations:
            entry = f" (entry: {violation.entry})" if violation.entry is not None else ""
            lines.append(f"  {violation.rule}: {violation.message}{entry}")
        lines.extend(f"  matched {match.setting}: {match.entry}" for match in self.allowed_by)
        return "\n".join(lines)

    def log_result(self) -> dict[str, Any]:
        """The engine's result for a decision log, with the violations as this decision shows them."""
        return {**self.raw, "violations": [{"rule": v.rule, "message": v.message} for v in self.violations]}


V = TypeVar("V")


class DecisionMemo(Generic[V]):
    """Decisions decoded from an engine's answer texts, reused when the same text comes again.

    Most answers repeat byte for byte (the same allow, with the same policy
    metadata), and a :class:`Decision` is a pure function of its answer, so an
    engine that receives text (regorus' JSON, OPA's body) looks the text up
    before it decodes and checks it. Bounded: at most :attr:`MAX_ENTRIES`
    texts of at most :attr:`MAX_TEXT` characters each (bytes, for OPA's
    bodies); cleared when full. Safe from any thread (one dict operation each).
    """

    MAX_ENTRIES = 1024
    MAX_TEXT = 4096

    def __init__(self) -> None:
        self._decoded: dict[str | bytes, V] = {}

    def get(self, text: str | bytes) -> V | None:
        """What :meth:`put` stored for ``text``, or None."""
        return self._decoded.get(text)

    def put(self, text: str | bytes, value: V) -> None:
        """Remember ``value`` (a decision, or what an engine needs beside it) for ``text`` if the text is short."""
        if len(text) > self.MAX_TEXT:
            return
        if len(self._decoded) >= self.MAX_ENTRIES:
            self._decoded.clear()
        self._decoded[text] = value


def _allowed_by(listed: object) -> tuple[AllowedBy, ...]:
    if not isinstance(listed, list):
        raise EngineResponseError("the decision's 'allowed_by' is not an array")
    matches = []
    for item in listed:
        if not (isinstance(item, dict) and isinstance(item.get("setting"), str) and isinstance(item.get("entry"), str)):
            raise EngineResponseError("an 'allowed_by' item lacks a string 'setting' or 'entry'")
        matches.append(AllowedBy(clean(item["setting"], MAX_QUOTED), clean(item["entry"], MAX_QUOTED)))
    return tuple(matches)


class PolicyViolationError(SekuireRuntimeError):
    """The policy denied an action; ``rule`` and ``reason`` name its first violation."""

    code = "policy_violation"

    def __init__(self, rule: str, reason: str, decision: Decision | None = None) -> None:
        super().__init__(f"{rule}: {reason}")
        self.rule = rule
        self.reason = reason
        self.decision = decision

    def __reduce__(self) -> tuple[type[PolicyViolationError], tuple[str, str, Decision | None]]:
        # Exceptions with a custom __init__ need this to survive pickling (multiprocessing, logging queues).
        return type(self), (self.rule, self.reason, self.decision)
