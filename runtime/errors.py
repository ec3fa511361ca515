"""Errors of ``sekuire.runtime``: one small tree under the project's :class:`SekuireError`.

    SekuireError                      (sekuire.compiler.errors)
    └── SekuireRuntimeError
        ├── PolicyViolationError      the policy denied an action (rule, reason, decision)
        ├── EngineError               no trustworthy decision could be had: the enforcer denies
        │   ├── EngineUnavailable     OPA down, refused, timed out; the embedded engine failed to load
        │   └── EngineResponseError   an error body, non-JSON, an undefined or malformed decision
        └── InvalidActionError        a bad argument (also a ValueError): wrong type, empty name,
                                      NUL in a path, unknown operation, oversized value

A deny is a decision value until the enforcer raises :class:`PolicyViolationError`;
third-party errors (httpx, regorus) are translated at the engine boundary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..compiler.errors import SekuireError

if TYPE_CHECKING:
    from .enforcer import Decision

__all__ = [
    "EngineError",
    "EngineResponseError",
    "EngineUnavailable",
    "InvalidActionError",
    "PolicyViolationError",
    "SekuireRuntimeError",
]


class SekuireRuntimeError(SekuireError):
    """Base of every error the runtime raises on purpose."""

    code = "runtime"


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


class EngineError(SekuireRuntimeError):
    code = "engine"


class EngineUnavailable(EngineError):
    code = "engine_unavailable"


class EngineResponseError(EngineError):
    code = "engine_response"


class InvalidActionError(SekuireRuntimeError, ValueError):
    code = "invalid_action"
