"""``get_agent``: an agent whose model selection, rate limits and tool calls pass through the enforcer.

Every :meth:`Agent.chat` runs, before any request reaches the model server:
``enforce_model(model, provider)``, ``enforce_rate_limit("request")`` and
``enforce_rate_limit("token", reserve)``. Token accounting follows OpenAI's own
rate limiter: ``reserve`` = a prompt estimate (about four characters a token,
plus a few per message) + ``max_tokens``, so a call the policy admitted cannot
overshoot the limit by more than the estimate's error. When the response
reports ``usage.total_tokens`` above the reserve, the excess is counted too (the
tokens are spent; the next call sees them). A reserve above the actual use is
not returned: the limiter can only err on the strict side. Pass a realistic
``max_tokens`` to keep the two close.

Without a policy.json, :func:`get_agent` enforces a *development policy* built
from sekuire.yml: unsigned, allowing exactly the manifest's provider, model and
tools, with no network, filesystem or API permissions and no rate limits. It is
logged as a warning, because it is the developer's declaration, not the
workspace's policy.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from ..compiler.errors import PolicyFormatError
from ..compiler.policy.document import Policy, load_policy, parse_policy
from ..compiler.policy.integrity import content_hash
from ..compiler.policy.keyring import Keyring
from .enforcer import PolicyEnforcer
from .errors import InvalidActionError, SekuireRuntimeError
from .llm import ChatModel, OpenAIChatClient
from .manifest import DEFAULT_MANIFEST_FILE, Manifest, ManifestError, load_manifest

__all__ = [
    "Agent",
    "DEFAULT_POLICY_FILE",
    "DEVELOPMENT_WORKSPACE",
    "PROVIDER_BASE_URLS",
    "development_policy",
    "estimate_tokens",
    "get_agent",
]

logger = logging.getLogger(__name__)

DEFAULT_POLICY_FILE = "policy.json"
DEVELOPMENT_WORKSPACE = "development"
#: Where a provider's OpenAI-compatible API lives when sekuire.yml gives no ``agent.llm.base_url``.
PROVIDER_BASE_URLS = {"openai": "https://api.openai.com/v1"}

_CHARS_PER_TOKEN = 4
_TOKENS_PER_MESSAGE = 4  # role and framing tokens of the chat format

ToolFunction = Callable[..., Any]
F = TypeVar("F", bound=ToolFunction)


def estimate_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """A rough prompt size in tokens (text parts only): what is reserved before the model answers."""
    chars = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(part["text"]) for part in content if isinstance(part, Mapping) and isinstance(part.get("text"), str))
    return math.ceil(chars / _CHARS_PER_TOKEN) + _TOKENS_PER_MESSAGE * len(messages)


def _total_tokens(response: Any) -> int | None:
    usage = response.get("usage") if isinstance(response, Mapping) else None
    total = usage.get("total_tokens") if isinstance(usage, Mapping) else None
    return total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None


class Agent:
    """One agent: an enforcer, an optional LLM client, and the tools it may call."""

    def __init__(
        self,
        name: str,
        enforcer: PolicyEnforcer,
        llm: ChatModel | None = None,
        *,
        model: str | None = None,
        provider: str | None = None,
        owns_llm: bool = False,
    ) -> None:
        """``model``/``provider``: the defaults of :meth:`chat` (sekuire.yml's ``agent.llm``)."""
        self.name = name
        self.enforcer = enforcer
        self.llm = llm
        self.model = model
        self.provider = provider
        self._owns_llm = owns_llm
        self._tools: dict[str, ToolFunction] = {}

    @property
    def policy(self) -> Policy:
        return self.enforcer.policy

    @property
    def tools(self) -> Mapping[str, ToolFunction]:
        return MappingProxyType(self._tools)

    # -- tools ----------------------------------------------------------------------------

    def register_tool(self, name: str, fn: ToolFunction) -> None:
        """Make ``fn`` callable as tool ``name``; the policy is asked at each call, not here."""
        if not isinstance(name, str) or not name:
            raise InvalidActionError("a tool needs a non-empty string name")
        if not callable(fn):
            raise InvalidActionError(f"tool {name!r} is not callable")
        if name in self._tools:
            raise InvalidActionError(f"tool {name!r} is already registered")
        self._tools[name] = fn

    def tool(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator: ``@agent.tool()`` registers a function under its own name, ``@agent.tool("x")`` as ``x``."""

        def register(fn: F) -> F:
            self.register_tool(name or fn.__name__, fn)
            return fn

        return register

    def call_tool(self, name: str, /, **arguments: Any) -> Any:
        """Run tool ``name`` if the policy allows it (``enforce_tool`` first; PolicyViolationError otherwise)."""
        self.enforcer.enforce_tool(name)
        return self._tool(name)(**arguments)

    async def acall_tool(self, name: str, /, **arguments: Any) -> Any:
        """Async twin; ``async def`` tools are awaited, plain ones called inline."""
        await self.enforcer.aenforce_tool(name)
        result = self._tool(name)(**arguments)
        return await result if inspect.isawaitable(result) else result

    def _tool(self, name: str) -> ToolFunction:
        fn = self._tools.get(name)
        if fn is None:
            raise InvalidActionError(f"tool {name!r} is allowed by the policy but not registered with agent {self.name!r}")
        return fn

    # -- chat -----------------------------------------------------------------------------

    def chat(
        self, messages: Sequence[Mapping[str, Any]], *, model: str | None = None, max_tokens: int | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """One chat completion (OpenAI response shape), after the model and rate-limit checks pass."""
        model, provider, reserve = self._prepare(messages, model, max_tokens)
        self.enforcer.enforce_model(model, provider)
        self.enforcer.enforce_rate_limit("request")
        self.enforcer.enforce_rate_limit("token", reserve)
        response = self._llm().complete(model, messages, max_tokens=max_tokens, **kwargs)
        self._account(reserve, response)
        return response

    async def achat(
        self, messages: Sequence[Mapping[str, Any]], *, model: str | None = None, max_tokens: int | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        model, provider, reserve = self._prepare(messages, model, max_tokens)
        await self.enforcer.aenforce_model(model, provider)
        await self.enforcer.aenforce_rate_limit("request")
        await self.enforcer.aenforce_rate_limit("token", reserve)
        llm = self._llm()
        acomplete = getattr(llm, "acomplete", None)
        if acomplete is not None:
            response = await acomplete(model, messages, max_tokens=max_tokens, **kwargs)
        else:
            response = await asyncio.to_thread(llm.complete, model, messages, max_tokens=max_tokens, **kwargs)
        self._account(reserve, response)
        return response

    def _prepare(self, messages: Any, model: str | None, max_tokens: Any) -> tuple[str, str | None, int]:
        if not isinstance(messages, Sequence) or isinstance(messages, str) or not all(isinstance(m, Mapping) for m in messages):
            raise InvalidActionError("messages must be a list of {'role', 'content'} objects")
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
            raise InvalidActionError("max_tokens must be a positive integer")
        chosen = model or self.model
        if not chosen:
            raise InvalidActionError(f"agent {self.name!r} has no model: pass model= or set agent.llm.model in sekuire.yml")
        # The manifest's provider belongs to the manifest's model; for any other model the policy infers it.
        provider = self.provider if chosen == self.model else None
        return chosen, provider, estimate_tokens(messages) + (max_tokens or 0)

    def _llm(self) -> ChatModel:
        if self.llm is None:
            raise SekuireRuntimeError(
                f"agent {self.name!r} has no LLM client: pass llm= to get_agent, or set agent.llm.base_url in sekuire.yml"
            )
        return self.llm

    def _account(self, reserved: int, response: Any) -> None:
        used = _total_tokens(response)
        if used is None:
            logger.debug("agent %s: the response reports no usage.total_tokens; %d tokens counted", self.name, reserved)
        elif used > reserved:
            # Spent already: counted whatever the limit says, so the next call is judged on real usage.
            self.enforcer.record_usage("token", used - reserved)

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        self.enforcer.close()
        close = getattr(self.llm, "close", None)
        if self._owns_llm and close is not None:
            close()

    async def aclose(self) -> None:
        await self.enforcer.aclose()
        aclose = getattr(self.llm, "aclose", None)
        if self._owns_llm and aclose is not None:
            await aclose()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def development_policy(manifest: Manifest) -> Policy:
    """An unsigned policy allowing exactly the manifest's provider, model and tools (nothing else, no rate limits)."""
    content = {
        "agent": {
            "models": {"allowed_providers": [manifest.llm.provider], "allowed_models": [manifest.llm.model]},
            "capabilities": {"allowed_tools": list(manifest.tools)},
        },
        "rate_limits": {},
    }
    document = {
        "policy_id": f"dev-{manifest.name}",
        "workspace_id": DEVELOPMENT_WORKSPACE,
        "version": "0",
        "status": "development",
        "hash": content_hash(content),
        "content": content,
    }
    return parse_policy(document, Keyring(), allow_unsigned=True, source=f"{manifest.path} (development policy)")


def _default_llm(manifest: Manifest) -> OpenAIChatClient | None:
    base_url = manifest.llm.base_url or PROVIDER_BASE_URLS.get(manifest.llm.provider)
    if base_url is None:
        return None
    env = manifest.llm.api_key_env or re.sub(r"\W", "_", manifest.llm.provider).upper() + "_API_KEY"
    api_key = os.environ.get(env)
    if api_key is None and manifest.llm.api_key_env:
        logger.warning("%s: environment variable %s (agent.llm.api_key_env) is not set; calling %s without an API key",
                       manifest.path, env, base_url)
    return OpenAIChatClient(base_url, api_key)


def get_agent(
    name: str,
    policy_path: str | os.PathLike[str] = DEFAULT_POLICY_FILE,
    manifest_path: str | os.PathLike[str] = DEFAULT_MANIFEST_FILE,
    *,
    llm: ChatModel | None = None,
    keyring: Keyring | str | os.PathLike[str] | None = None,
    allow_unsigned: bool = False,
    **enforcer_kwargs: Any,
) -> Agent:
    """The agent ``name``: enforcing policy.json (verified) if it exists, else a development policy from sekuire.yml.

    ``enforcer_kwargs`` go to :class:`PolicyEnforcer` (``warn_only``, ``on_violation``,
    ``engine``, ``decision_log``, ...); ``agent_id`` defaults to ``name``.
    """
    manifest = load_manifest(manifest_path) if Path(manifest_path).exists() else None
    if manifest is not None and manifest.name != name:
        raise ManifestError(f"defines agent {manifest.name!r}, not {name!r}", source=str(manifest_path), pointer="/agent/name")
    if Path(policy_path).exists():
        policy = load_policy(policy_path, keyring, allow_unsigned)
    elif manifest is not None:
        policy = development_policy(manifest)
        logger.warning(
            "DEVELOPMENT POLICY for agent %s: %s not found, enforcing an UNSIGNED policy derived from %s "
            "(model %s/%s, tools %s). Pull the workspace policy (`sekuire policy pull`) before production.",
            name, policy_path, manifest_path, manifest.llm.provider, manifest.llm.model, list(manifest.tools) or "none",
        )
    else:
        raise PolicyFormatError(
            f"no such file, and no {manifest_path} to derive a development policy from", source=str(policy_path)
        )
    enforcer_kwargs.setdefault("agent_id", name)
    enforcer = PolicyEnforcer(policy, **enforcer_kwargs)
    owns_llm = False
    if llm is None and manifest is not None:
        llm, owns_llm = _default_llm(manifest), True
    return Agent(
        name,
        enforcer,
        llm,
        model=manifest.llm.model if manifest else None,
        provider=manifest.llm.provider if manifest else None,
        owns_llm=owns_llm,
    )
