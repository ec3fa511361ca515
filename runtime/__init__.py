"""sekuire.runtime: enforce workspace policies in Python agents through OPA queries."""

from __future__ import annotations

from .agent import Agent, get_agent
from .cache import DecisionCache
from .client import AsyncPolicyClient, PolicyClient, PolicyRollbackError
from .decision import Decision, PolicyViolationError, Violation
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

__all__ = [
    "Agent",
    "AsyncPolicyClient",
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
    "Violation",
    "get_agent",
    "load_manifest",
]
