"""sekuire.runtime: enforce workspace policies in Python agents through OPA queries."""

from __future__ import annotations

from .cache import DecisionCache
from .decision_log import DecisionLogger, FileSink, HTTPSink, LoggingSink
from .enforcer import Decision, PolicyEnforcer, Violation
from .engine import EmbeddedEngine, Engine
from .errors import (
    EngineError,
    EngineResponseError,
    EngineUnavailable,
    InvalidActionError,
    PolicyViolationError,
    SekuireRuntimeError,
)
from .opa import OPAEngine
from .ratelimit import RateLimiter

__all__ = [
    "Decision",
    "DecisionCache",
    "DecisionLogger",
    "EmbeddedEngine",
    "Engine",
    "EngineError",
    "EngineResponseError",
    "EngineUnavailable",
    "FileSink",
    "HTTPSink",
    "InvalidActionError",
    "LoggingSink",
    "OPAEngine",
    "PolicyEnforcer",
    "PolicyViolationError",
    "RateLimiter",
    "SekuireRuntimeError",
    "Violation",
]
