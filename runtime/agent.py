"""``get_agent``: an agent whose model selection, model server, rate limits and tool calls pass through the enforcer.

Every :meth:`Agent.chat` runs, before any request (and the API key) reaches the
model server: ``enforce_model(model, provider)``; ``enforce_network(host,
scheme)`` of the LLM client's ``base_url`` (when the client has one and the
policy has a ``permissions.network`` section: a policy without one does not
restrict the model server, and the agent says so once at WARNING);
``enforce_rate_limit("request")`` and ``enforce_rate_limit("token", reserve)``.

Token accounting follows OpenAI's own rate limiter: ``reserve`` = a prompt
estimate (about four characters a token, plus a few per message) +
``max_tokens``, or :data:`DEFAULT_COMPLETION_RESERVE` tokens when the call sets
no ``max_tokens``. After the answer the agent counts what was used: the
response's ``usage.total_tokens``, or, when the server reports none, an
estimate from the request and the response text (characters / 4, never less).
Use beyond the reserve is counted at once (the tokens are spent; the next call
sees them); a reserve above the actual use is not returned: the limiter can
only err on the strict side.

Without a policy.json, :func:`get_agent` refuses, naming the missing file,
unless the caller opts into a *development policy* (``allow_development_policy=True``
or ``SEKUIRE_ALLOW_DEV_POLICY=true``): one built from sekuire.yml, unsigned,
allowing exactly the manifest's provider, model and tools, with no network,
filesystem or API permissions and no rate limits, logged at WARNING.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from ..compiler.errors import PolicyFormatError
from ..compiler.policy.document import Policy, load_policy, parse_policy
from ..compiler.policy.integrity import content_hash
from ..compiler.policy.keyring import Keyring
from .enforcer import PolicyEnforcer
from .errors import InvalidActionError, SekuireRuntimeError
from .llm import ChatModel, OpenAIChatClient, redact_url
from .manifest import DEFAULT_MANIFEST_FILE, Manifest, ManifestError, load_manifest
from .tokens import estimate_tokens, estimate_used, total_tokens

__all__ = [
    "ALLOW_DEV_POLICY_ENV",
    "Agent",
    "DEFAULT_COMPLETION_RESERVE",
    "DEFAULT_POLICY_FILE",
    "DEVELOPMENT_WORKSPACE",
    "PROVIDER_BASE_URLS",
    "aget_agent",
    "development_policy",
    "estimate_tokens",
    "get_agent",
]

logger = logging.getLogger(__name__)

DEFAULT_POLICY_FILE = "policy.json"
DEVELOPMENT_WORKSPACE = "development"
#: Where a provider's OpenAI-compatible API lives when sekuire.yml gives no ``agent.llm.base_url``.
PROVIDER_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "google": "https://generativelanguage.googleapis.com/v1beta/openai",
}
#: Set to ``true`` (any case, nothing around it) to let get_agent enforce a development policy.
ALLOW_DEV_POLICY_ENV = "SEKUIRE_ALLOW_DEV_POLICY"
#: Tokens reserved for the answer of a chat that sets no ``max_tokens``.
DEFAULT_COMPLETION_RESERVE = 1024


ToolFunction = Callable[..., Any]
F = TypeVar("F", bound=ToolFunction)


@dataclass(frozen=True)
class _Call:
    """One chat call, checked and ready: what the policy is asked about and what is reserved."""

    messages: list[Mapping[str, Any]]
    model: str
    provider: str | None
    reserve: int
    endpoint: tuple[str, str] | None


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
        self._unchecked_endpoint_logged = False

    @property
    def policy(self) -> Policy:
        """The verified policy the agent enforces."""
        return self.enforcer.policy

    @property
    def tools(self) -> Mapping[str, ToolFunction]:
        """The registered tools by name (read-only); each call goes through ``enforce_tool``."""
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
        """Run tool ``name`` if the policy allows it, its keyword arguments as ``input.action.args`` (JSON only).

        ``enforce_tool`` decides first: PolicyViolationError for a deny, InvalidActionError for arguments that
        are not plain JSON (:mod:`.args`); the tool runs only after an allow.
        """
        self.enforcer.enforce_tool(name, arguments)
        return self._tool(name)(**arguments)

    async def acall_tool(self, name: str, /, **arguments: Any) -> Any:
        """Async twin; ``async def`` tools are awaited, plain ones called inline."""
        await self.enforcer.aenforce_tool(name, arguments)
        result = self._tool(name)(**arguments)
        return await result if inspect.isawaitable(result) else result

    def _tool(self, name: str) -> ToolFunction:
        fn = self._tools.get(name)
        if fn is None:
            raise InvalidActionError(f"tool {name!r} is allowed by the policy but not registered with agent {self.name!r}")
        return fn

    # -- chat -----------------------------------------------------------------------------

    def chat(
        self,
        messages: str | Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """One chat completion (OpenAI response shape), after the policy allows model, server and rate.

        ``messages`` is a list of ``{"role", "content"}`` objects, or a string: one user message.
        """
        call = self._prepare(messages, model, max_tokens)
        self.enforcer.enforce_model(call.model, call.provider)
        if call.endpoint is not None:
            self.enforcer.enforce_network(*call.endpoint)
        self.enforcer.enforce_rate_limit("request")
        self.enforcer.enforce_rate_limit("token", call.reserve)
        response = self._llm().complete(call.model, call.messages, max_tokens=max_tokens, **kwargs)
        self._account(call, response)
        return response

    async def achat(
        self,
        messages: str | Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The asyncio twin of :meth:`chat`."""
        call = self._prepare(messages, model, max_tokens)
        await self.enforcer.aenforce_model(call.model, call.provider)
        if call.endpoint is not None:
            await self.enforcer.aenforce_network(*call.endpoint)
        await self.enforcer.aenforce_rate_limit("request")
        await self.enforcer.aenforce_rate_limit("token", call.reserve)
        llm = self._llm()
        acomplete = getattr(llm, "acomplete", None)
        response: dict[str, Any]
        if acomplete is not None:
            response = await acomplete(call.model, call.messages, max_tokens=max_tokens, **kwargs)
        else:
            response = await asyncio.to_thread(llm.complete, call.model, call.messages, max_tokens=max_tokens, **kwargs)
        self._account(call, response)
        return response

    def _prepare(self, messages: Any, model: str | None, max_tokens: Any) -> _Call:
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        if not isinstance(messages, Sequence) or not all(isinstance(m, Mapping) for m in messages):
            raise InvalidActionError("messages must be a string or a list of {'role', 'content'} objects")
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
            raise InvalidActionError("max_tokens must be a positive integer")
        chosen = model or self.model
        if not chosen:
            raise InvalidActionError(f"agent {self.name!r} has no model: pass model= or set agent.llm.model in sekuire.yml")
        # The manifest's provider belongs to the manifest's model; for any other model the policy infers it.
        provider = self.provider if chosen == self.model else None
        reserve = estimate_tokens(messages) + (max_tokens if max_tokens is not None else DEFAULT_COMPLETION_RESERVE)
        return _Call(list(messages), chosen, provider, reserve, self._endpoint())

    def _endpoint(self) -> tuple[str, str] | None:
        """(host, scheme) of the LLM client's ``base_url`` when the policy restricts the network, else None."""
        base_url = getattr(self.llm, "base_url", None)
        if base_url is None:
            return None  # an in-process or custom client: where it sends is its own business
        base_url = str(base_url) if isinstance(base_url, httpx.URL) else base_url
        if not isinstance(base_url, str):
            raise InvalidActionError(f"agent {self.name!r}: the LLM client's base_url is not a string")
        permissions = self.policy.content.permissions
        if permissions is None or permissions.network is None:
            if not self._unchecked_endpoint_logged:
                self._unchecked_endpoint_logged = True
                logger.warning(
                    "agent %s: policy %s has no permissions.network section, so the model server %s is not checked",
                    self.name, self.policy.policy_id, redact_url(base_url),
                )
            return None
        try:
            parts = urlsplit(base_url)
        except ValueError:
            raise InvalidActionError(f"agent {self.name!r}: the LLM client's base_url is not a URL") from None
        # The host as the URL names it (port and brackets kept: the policy's host rules remove them).
        return parts.netloc.rpartition("@")[2], parts.scheme

    def _llm(self) -> ChatModel:
        if self.llm is None:
            raise SekuireRuntimeError(
                f"agent {self.name!r} has no LLM client: pass llm= to get_agent, or set agent.llm.base_url in sekuire.yml"
            )
        return self.llm

    def _account(self, call: _Call, response: Any) -> None:
        used = total_tokens(response)
        if used is None:
            used = estimate_used(call.messages, response)
            logger.debug("agent %s: the response reports no usage.total_tokens; estimated %d tokens", self.name, used)
        if used > call.reserve:
            # Spent already: counted whatever the limit says, so the next call is judged on real usage.
            self.enforcer.record_usage("token", used - call.reserve)

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the enforcer and, when the agent built it, the LLM client."""
        self.enforcer.close()
        close = getattr(self.llm, "close", None)
        if self._owns_llm and close is not None:
            close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
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
                       manifest.path, env, redact_url(base_url))
    return OpenAIChatClient(base_url, api_key)


def _dev_policy_allowed(allow: bool | None) -> bool:
    if allow is not None:
        return allow
    return os.environ.get(ALLOW_DEV_POLICY_ENV, "").lower() == "true"


def get_agent(
    name: str,
    policy_path: str | os.PathLike[str] = DEFAULT_POLICY_FILE,
    manifest_path: str | os.PathLike[str] = DEFAULT_MANIFEST_FILE,
    *,
    llm: ChatModel | None = None,
    keyring: Keyring | str | os.PathLike[str] | None = None,
    allow_unsigned: bool = False,
    allow_development_policy: bool | None = None,
    **enforcer_kwargs: Any,
) -> Agent:
    """The agent ``name``, enforcing policy.json (verified).

    Without policy.json it refuses, unless ``allow_development_policy`` is true (None:
    ``SEKUIRE_ALLOW_DEV_POLICY=true``); then it enforces the unsigned
    :func:`development_policy` of sekuire.yml. Without ``llm`` the agent builds an
    :class:`OpenAIChatClient` from sekuire.yml's ``agent.llm`` (``provider``, ``model``,
    ``base_url``, ``api_key_env``). ``enforcer_kwargs`` go to :class:`PolicyEnforcer`
    (``warn_only``, ``on_violation``, ``engine``, ``decision_log``, ...); ``agent_id``
    defaults to ``name``.
    """
    manifest = load_manifest(manifest_path) if Path(manifest_path).exists() else None
    if manifest is not None and manifest.name != name:
        raise ManifestError(f"defines agent {manifest.name!r}, not {name!r}", source=str(manifest_path), pointer="/agent/name")
    if Path(policy_path).exists():
        policy = load_policy(policy_path, keyring, allow_unsigned)
    elif not _dev_policy_allowed(allow_development_policy):
        raise PolicyFormatError(
            "no such file: pull the workspace policy (`sekuire policy pull`), or pass allow_development_policy=True "
            f"(or set {ALLOW_DEV_POLICY_ENV}=true) to enforce an unsigned policy derived from {manifest_path}",
            source=str(policy_path),
        )
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


async def aget_agent(
    name: str,
    policy_path: str | os.PathLike[str] = DEFAULT_POLICY_FILE,
    manifest_path: str | os.PathLike[str] = DEFAULT_MANIFEST_FILE,
    **kwargs: Any,
) -> Agent:
    """The asyncio twin of :func:`get_agent`: the files are read and the policy compiled off the event loop."""
    return await asyncio.to_thread(get_agent, name, policy_path, manifest_path, **kwargs)
