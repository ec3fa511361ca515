"""Errors of ``sekuire.runtime``: one small tree under the project's :class:`SekuireError`.

    SekuireError                      (sekuire.compiler.errors)
    └── SekuireRuntimeError
        ├── PolicyViolationError      the policy denied an action (rule, reason, decision)
        ├── EngineError               no trustworthy decision could be had: the enforcer denies
        │   ├── EngineUnavailable     OPA down, refused, timed out; the embedded engine failed to load
        │   └── EngineResponseError   an error body, non-JSON, an undefined or malformed decision
        └── InvalidActionError        a bad argument (also a ValueError): wrong type, empty name,
                                      NUL in a path, unknown operation, oversized value

:class:`PolicyViolationError` lives beside the decision it carries, in :mod:`.decision`.
A deny is a decision value until the enforcer raises it;
third-party errors (httpx, regorus) are translated at the engine boundary.
"""

from __future__ import annotations

from ..compiler.errors import SekuireError

__all__ = [
    "EngineError",
    "EngineResponseError",
    "EngineUnavailable",
    "InvalidActionError",
    "SekuireRuntimeError",
]


class SekuireRuntimeError(SekuireError):
    """Base of every error the runtime raises on purpose."""

    code = "runtime"


class EngineError(SekuireRuntimeError):
    code = "engine"


class EngineUnavailable(EngineError):
    code = "engine_unavailable"


class EngineResponseError(EngineError):
    code = "engine_response"


class InvalidActionError(SekuireRuntimeError, ValueError):
    code = "invalid_action"
