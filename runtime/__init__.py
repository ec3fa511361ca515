"""sekuire.runtime: enforce workspace policies in Python agents through OPA queries.

``A2ATaskDelegator`` is loaded on first access (``sekuire.runtime.a2a``); it needs the ``[a2a]`` extra only
when it delegates, and importing this package never loads the A2A SDK.
"""

from __future__ import annotations

from .agent import Agent, aget_agent, get_agent
from .beacon import Beacon
from .cache import DecisionCache
from .client import AsyncPolicyClient, PolicyClient, PolicyRollbackError
from .counters import DecisionCounters, DecisionCounts
from .decision import AllowedBy, Decision, PolicyViolationError, Violation
from .decision_log import DecisionLogger, FileSink, HTTPSink, LoggingSink
from .enforcer import PolicyEnforcer
from .engine import EmbeddedEngine, Engine
from .errors import (
    EngineError,
    EngineResponseError,
    EngineUnavailable,
    InvalidActionError,
    SekuireRuntimeError,
)
from .gateway import PolicyGateway
from .llm import LLMError, OpenAIChatClient
from .manifest import Manifest, ManifestError, load_manifest
from .opa import OPAEngine
from .ratelimit import RateLimiter
from .taskworker import Task, TaskResult, TaskWorker

__all__ = [
    "A2ATaskDelegator",
    "Agent",
    "AllowedBy",
    "AsyncPolicyClient",
    "Beacon",
    "Decision",
    "DecisionCache",
    "DecisionCounters",
    "DecisionCounts",
    "DecisionLogger",
    "EmbeddedEngine",
    "Engine",
    "EngineError",
    "EngineResponseError",
    "EngineUnavailable",
    "FileSink",
    "HTTPSink",
    "InvalidActionError",
    "LLMError",
    "LoggingSink",
    "Manifest",
    "ManifestError",
    "OPAEngine",
    "OpenAIChatClient",
    "PolicyClient",
    "PolicyEnforcer",
    "PolicyGateway",
    "PolicyRollbackError",
    "PolicyViolationError",
    "RateLimiter",
    "SekuireRuntimeError",
    "Task",
    "TaskResult",
    "TaskWorker",
    "Violation",
    "aget_agent",
    "get_agent",
    "load_manifest",
]


def __getattr__(name: str) -> object:
    if name == "A2ATaskDelegator":
        from .a2a import A2ATaskDelegator

        return A2ATaskDelegator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
