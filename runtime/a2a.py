"""A2ATaskDelegator: hands a task to a peer agent over A2A, only when the policy allows both the task and the peer.

Built on the official A2A Python SDK (``a2a-sdk``, the ``[a2a]`` extra), which
this module imports only when a delegation starts: importing
``sekuire.runtime`` (or this module) never loads it.

One delegation, in order; the first refusal stops it before anything is sent:

1. ``gateway.acheck_capability(capability)`` must allow, else
   :class:`PolicyViolationError` (rule and message of the decision);
2. the peer URL's host must pass ``enforce_network(host, scheme)``;
3. the Agent Card is read from ``<peer>/.well-known/agent-card.json``
   (bounded: ``max_card_bytes`` and the deadline; redirects not followed);
4. every JSON-RPC interface the card names is checked the same way and the
   ones whose host the policy refuses are dropped, so a card cannot send the
   task to a host the policy does not allow; if none is left, the first
   refusal is raised;
5. one JSON-RPC 2.0 request (no streaming) carries a user message with a data
   part ``{"capability", "args"}`` (and a text part if given): ``SendMessage``
   to an A2A 1.0 interface, ``message/send`` to an A2A 0.3 one, as the SDK
   negotiates from the card. Answers are capped at ``max_response_bytes``
   (read uncompressed) and the whole delegation at ``timeout`` seconds.

Anything else that goes wrong (no card, a bad card, no JSON-RPC interface,
transport errors, a JSON-RPC error) is an :class:`A2ADelegationError`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import httpx

from .agentapi import arequest_json, sanitize
from .decision import Decision, PolicyViolationError
from .errors import SekuireRuntimeError
from .gateway import PolicyGateway

if TYPE_CHECKING:
    from a2a.types import AgentCard, StreamResponse

__all__ = ["A2ADelegationError", "A2ATaskDelegator", "AGENT_CARD_PATH", "Delegation"]

#: Where an A2A agent publishes its Agent Card.
AGENT_CARD_PATH = "/.well-known/agent-card.json"
_JSONRPC = "JSONRPC"


class A2ADelegationError(SekuireRuntimeError):
    """The peer could not be reached, described or asked (never a policy deny: that is PolicyViolationError)."""

    code = "a2a_delegation"


@dataclass(frozen=True)
class Delegation:
    """The peer's answer: the task's final ``state`` (``completed``, ``failed``, ...; ``message`` for a plain reply)."""

    peer: str
    endpoint: str
    protocol_version: str
    state: str
    task_id: str | None = None
    text: str = ""
    data: list[Any] = field(default_factory=list)


class _CappedStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, limit: int) -> None:
        self._stream = stream
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self._stream:
            size += len(chunk)
            if size > self._limit:
                raise httpx.ReadError(f"answer larger than {self._limit} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class _CappedTransport(httpx.AsyncBaseTransport):
    """Every answer's body stops at ``limit`` bytes (the SDK reads answers whole)."""

    def __init__(self, limit: int) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._limit = limit

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=_CappedStream(response.stream, self._limit), extensions=response.extensions)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _sdk() -> Any:
    try:
        import a2a.client
        import a2a.client.card_resolver
        import a2a.types
    except ImportError as exc:
        raise ImportError("A2ATaskDelegator needs the A2A SDK: pip install 'sekuire-opa[a2a]'") from exc
    return a2a


def _host_and_scheme(url: str, what: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise A2ADelegationError(f"{what} {sanitize(url)!r} is not an http(s) URL with a host")
    return parts.hostname, parts.scheme


def _refused(decision: Decision) -> PolicyViolationError:
    first = decision.violations[0]
    return PolicyViolationError(first.rule, first.message, decision)


class A2ATaskDelegator:
    """Delegate tasks to peer agents for ``gateway``'s workspace, within what its live policy allows."""

    def __init__(
        self,
        gateway: PolicyGateway,
        *,
        timeout: float = 30.0,
        max_card_bytes: int = 1 << 16,
        max_response_bytes: int = 4 << 20,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """``headers`` go with every request to peers (e.g. authorization)."""
        _sdk()  # fail at construction, with the install hint, when the extra is missing
        if timeout <= 0 or max_card_bytes <= 0 or max_response_bytes <= 0:
            raise ValueError("timeout, max_card_bytes and max_response_bytes must be positive")
        self.gateway = gateway
        self.timeout = float(timeout)
        self.max_card_bytes = max_card_bytes
        self.max_response_bytes = max_response_bytes
        self._headers = {**(headers or {}), "Accept-Encoding": "identity"}

    def delegate(self, peer_url: str, capability: str, args: Mapping[str, Any] | None = None, *,
                 text: str | None = None) -> Delegation:
        """Synchronous :meth:`adelegate` (runs its own event loop; call :meth:`adelegate` from async code)."""
        return asyncio.run(self.adelegate(peer_url, capability, args, text=text))

    async def adelegate(self, peer_url: str, capability: str, args: Mapping[str, Any] | None = None, *,
                        text: str | None = None) -> Delegation:
        """Ask the agent at ``peer_url`` to perform ``capability`` with ``args``; see the module doc for the checks."""
        decision = await self.gateway.acheck_capability(capability)
        if not decision.allowed:
            raise _refused(decision)
        host, scheme = _host_and_scheme(peer_url, "peer URL")
        enforcer = self.gateway.enforcer
        await enforcer.aenforce_network(host, scheme)
        try:
            async with asyncio.timeout(self.timeout):
                async with httpx.AsyncClient(headers=self._headers, timeout=self.timeout, follow_redirects=False,
                                             transport=_CappedTransport(self.max_response_bytes)) as client:
                    card = await self._card(client, peer_url.rstrip("/"))
                    return await self._send(client, peer_url, card, capability, dict(args or {}), text)
        except TimeoutError:
            raise A2ADelegationError(f"no answer from {sanitize(peer_url)} within {self.timeout:g} s") from None

    async def _card(self, client: httpx.AsyncClient, base: str) -> AgentCard:
        sdk = _sdk()
        url = base + AGENT_CARD_PATH
        try:
            document = await arequest_json(client, "GET", url, max_bytes=self.max_card_bytes, deadline=self.timeout)
            card = sdk.client.card_resolver.parse_agent_card(document)
        except SekuireRuntimeError:
            raise
        except Exception as exc:  # BackendError, the SDK's ParseError, protobuf's ParseError
            raise A2ADelegationError(f"no usable Agent Card at {sanitize(url)}: {sanitize(exc)}") from None
        allowed: list[tuple[Any, Decision]] = []
        refusals: list[tuple[Any, Decision]] = []
        for interface in card.supported_interfaces:
            if interface.protocol_binding != _JSONRPC:
                continue
            try:
                host, scheme = _host_and_scheme(interface.url, "the card's interface URL")
            except A2ADelegationError:
                continue
            decision = await self.gateway.enforcer.acheck({"type": "network", "host": host, "protocol": scheme})
            (allowed if decision.allowed else refusals).append((interface, decision))
        if not allowed:
            if refusals:
                raise _refused(refusals[0][1])
            raise A2ADelegationError(f"the Agent Card at {sanitize(url)} offers no JSON-RPC interface")
        # The SDK talks to the one interface left on the card: A2A 1.x first, then 0.3, then the card's order.
        chosen = min((interface for interface, _ in allowed), key=_preference)
        del card.supported_interfaces[:]
        card.supported_interfaces.append(chosen)
        return cast("AgentCard", card)

    async def _send(self, client: httpx.AsyncClient, peer_url: str, card: AgentCard, capability: str,
                    args: dict[str, Any], text: str | None) -> Delegation:
        sdk = _sdk()
        types = sdk.types
        config = sdk.client.ClientConfig(streaming=False, httpx_client=client, supported_protocol_bindings=[_JSONRPC])
        helpers = _helpers()
        parts = [helpers.new_data_part({"capability": capability, "args": args})]
        if text:
            parts.append(helpers.new_text_part(text))
        message = types.Message(message_id=uuid.uuid4().hex, role=types.Role.ROLE_USER, parts=parts)
        try:
            a2a_client = sdk.client.ClientFactory(config).create(card)
            events = [event async for event in a2a_client.send_message(types.SendMessageRequest(message=message))]
        except (SekuireRuntimeError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise A2ADelegationError(f"the peer at {sanitize(peer_url)} failed: {sanitize(exc)}") from None
        if not events:
            raise A2ADelegationError(f"the peer at {sanitize(peer_url)} sent no answer")
        interface = card.supported_interfaces[0]
        return _delegation(sdk, peer_url, interface.url, interface.protocol_version, events[-1])


def _preference(interface: Any) -> int:
    version = interface.protocol_version or ""
    return 0 if version.split(".")[0] == "1" else 1 if version.startswith("0.3") else 2


def _delegation(sdk: Any, peer: str, endpoint: str, version: str, event: StreamResponse) -> Delegation:
    helpers = _helpers()
    if event.HasField("task"):
        task = event.task
        texts = [helpers.get_message_text(task.status.message)] if task.status.HasField("message") else []
        data: list[Any] = []
        for artifact in task.artifacts:
            texts.extend(helpers.get_text_parts(artifact.parts))
            data.extend(helpers.get_data_parts(artifact.parts))
        state = sdk.types.TaskState.Name(task.status.state).removeprefix("TASK_STATE_").lower()
        return Delegation(peer, endpoint, version, state, task.id or None, "\n".join(t for t in texts if t), data)
    message = event.message
    return Delegation(peer, endpoint, version, "message", message.task_id or None,
                      helpers.get_message_text(message), helpers.get_data_parts(message.parts))


def _helpers() -> Any:
    from a2a.helpers import proto_helpers

    return proto_helpers
