"""PolicyGateway: a workspace's live policy and its enforcer, swapped when the backend announces a new one.

The gateway holds one ``(policy, enforcer)`` pair and replaces it as a whole, so
a check always runs against one policy, never a mix. A refresh (on
:meth:`PolicyGateway.on_heartbeat_response` or :meth:`PolicyGateway.refresh`)
fetches through the client, which verifies before it returns and refuses
rollbacks; if fetching, verification or building the enforcer fails, or the
policy fetched is not the one announced, the gateway keeps enforcing the last
verified policy, logs an error and reports False. A policy signed by a key the
keyring does not hold is such a failure (UnknownKeyError): a heartbeat can never
make the gateway trust a new key (the client never fetches keys).

All enforcers of a gateway share one rate limiter, so a policy update does not
reset the agent's usage. Replaced enforcers are not closed (a check may still be
running on one); they are released when no longer referenced.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..compiler.errors import SekuireError
from ..compiler.policy.document import Policy
from ..compiler.textsafe import clean
from .client import AsyncPolicyClient, PolicyClient
from .counters import DecisionCounters
from .decision import Decision
from .enforcer import PolicyEnforcer
from .errors import SekuireRuntimeError
from .ratelimit import RateLimiter

__all__ = ["EnforcerFactory", "PolicyGateway"]

logger = logging.getLogger(__name__)

EnforcerFactory = Callable[[Policy], PolicyEnforcer]


class _NotAnnounced(SekuireRuntimeError):
    """The backend served a verified policy other than the one its heartbeat announced."""

    code = "policy_not_announced"


@dataclass(frozen=True)
class _Active:
    policy: Policy
    enforcer: PolicyEnforcer


class PolicyGateway:
    """The live policy of ``workspace_id`` as served by ``client`` (a PolicyClient or an AsyncPolicyClient)."""

    def __init__(
        self,
        client: PolicyClient | AsyncPolicyClient,
        workspace_id: str,
        *,
        enforcer_factory: EnforcerFactory | None = None,
        **enforcer_kwargs: Any,
    ) -> None:
        """``enforcer_factory(policy)`` builds each enforcer; by default ``PolicyEnforcer(policy, **enforcer_kwargs)``."""
        if enforcer_factory is not None and enforcer_kwargs:
            raise TypeError("pass either enforcer_factory or PolicyEnforcer keyword arguments, not both")
        self.client = client
        self.workspace_id = workspace_id
        enforcer_kwargs.setdefault("rate_limiter", RateLimiter())

        def default_factory(policy: Policy) -> PolicyEnforcer:
            return PolicyEnforcer(policy, **enforcer_kwargs)

        self._factory = enforcer_factory or default_factory
        self._active: _Active | None = None
        #: Decisions of every enforcer this gateway installs, across policy swaps (read by Beacon).
        self.counters = DecisionCounters()
        # Serialise refreshes (not checks): two heartbeats must not race to install different enforcers.
        self._lock = threading.Lock()
        self._alock = asyncio.Lock()

    # -- state ------------------------------------------------------------------------

    def _current(self) -> _Active:
        active = self._active  # one read: the pair cannot change under the caller
        if active is None:
            raise SekuireRuntimeError(f"the policy gateway of workspace {self.workspace_id} is not initialised: "
                                      "call initialize() first")
        return active

    @property
    def policy(self) -> Policy:
        """The active, verified policy (raises before :meth:`initialize`)."""
        return self._current().policy

    @property
    def enforcer(self) -> PolicyEnforcer:
        """The enforcer of the active policy (raises before :meth:`initialize`)."""
        return self._current().enforcer

    @property
    def policy_hash(self) -> str | None:
        """The active policy's content hash, as heartbeats compare it."""
        active = self._active
        return active.policy.hash if active is not None else None

    # -- decisions --------------------------------------------------------------------

    def check_capability(self, name: str, args: Mapping[str, Any] | None = None) -> Decision:
        """The decision for capability ``name`` (e.g. ``github:create_issue``) with optional JSON ``args``; a deny is
        returned, not raised."""
        return self._current().enforcer.check({"type": "capability", "name": name, "args": args})

    def allowed_tools(self, names: Sequence[str]) -> list[str]:
        """The names in ``names`` the active policy allows as tools, in order (one batch query: ``check_many``)."""
        decisions = self._current().enforcer.check_many([{"type": "tool", "name": name} for name in names])
        return [name for name, decision in zip(names, decisions, strict=True) if decision.allow]

    async def acheck_capability(self, name: str, args: Mapping[str, Any] | None = None) -> Decision:
        """Async twin of :meth:`check_capability`."""
        return await self._current().enforcer.acheck({"type": "capability", "name": name, "args": args})

    # -- loading and refreshing -------------------------------------------------------

    def initialize(self) -> Policy:
        """Fetch the active policy and build its enforcer; errors propagate (nothing to fall back on yet)."""
        with self._lock:
            policy = self._sync_client().fetch_active_policy(self.workspace_id)
            self._install(policy, self._factory(policy))
            return policy

    async def ainitialize(self) -> Policy:
        """Async twin of :meth:`initialize`."""
        async with self._alock:
            policy = await self._async_client().fetch_active_policy(self.workspace_id)
            self._install(policy, await asyncio.to_thread(self._factory, policy))
            return policy

    def refresh(self, expected_hash: str | None = None) -> bool:
        """Fetch again and swap if the policy changed; True if the gateway now enforces the (expected) active policy."""
        with self._lock:
            try:
                policy = self._sync_client().fetch_active_policy(self.workspace_id)
                if self._wanted(policy, expected_hash):
                    self._install(policy, self._factory(policy))
            except SekuireError as exc:
                return self._kept(exc)
            return True

    async def arefresh(self, expected_hash: str | None = None) -> bool:
        """Async twin of :meth:`refresh`."""
        async with self._alock:
            try:
                policy = await self._async_client().fetch_active_policy(self.workspace_id)
                if self._wanted(policy, expected_hash):
                    self._install(policy, await asyncio.to_thread(self._factory, policy))
            except SekuireError as exc:
                return self._kept(exc)
            return True

    def on_heartbeat_response(self, response: Mapping[str, Any]) -> bool:
        """Refresh when ``response["active_policy_hash"]`` is not the hash enforced now.

        True when the gateway enforces the announced policy afterwards (already
        did, or swapped to it), or nothing was announced; False when it kept
        another policy because the refresh failed (logged as an error).
        """
        announced = self._announced(response)
        if announced is None or announced == self.policy_hash:
            return True
        return self.refresh(announced)

    async def aon_heartbeat_response(self, response: Mapping[str, Any]) -> bool:
        """Async twin of :meth:`on_heartbeat_response`."""
        announced = self._announced(response)
        if announced is None or announced == self.policy_hash:
            return True
        return await self.arefresh(announced)

    def close(self) -> None:
        """Close the current enforcer (and the engine it owns); the client is the caller's to close."""
        active, self._active = self._active, None
        if active is not None:
            active.enforcer.close()

    # -- the shared, I/O-free parts ----------------------------------------------------

    def _sync_client(self) -> PolicyClient:
        if not isinstance(self.client, PolicyClient):
            raise TypeError("this gateway has an AsyncPolicyClient: use ainitialize/arefresh/aon_heartbeat_response")
        return self.client

    def _async_client(self) -> AsyncPolicyClient:
        if not isinstance(self.client, AsyncPolicyClient):
            raise TypeError("this gateway has a PolicyClient: use initialize/refresh/on_heartbeat_response")
        return self.client

    @staticmethod
    def _announced(response: Mapping[str, Any]) -> str | None:
        announced = response.get("active_policy_hash") if isinstance(response, Mapping) else None
        if announced is None:
            return None
        if not isinstance(announced, str) or not announced:
            logger.error("heartbeat response has an invalid active_policy_hash (%s); ignored", type(announced).__name__)
            return None
        return announced

    def _wanted(self, policy: Policy, expected_hash: str | None) -> bool:
        """Whether ``policy`` should be installed: it is the one announced, and not already enforced."""
        if expected_hash is not None and policy.hash != expected_hash:
            raise _NotAnnounced(
                f"the backend announced policy hash {clean(expected_hash, 16)}... but serves {policy.policy_id} "
                f"v{policy.version} with hash {policy.hash[:16]}..."
            )
        return policy.hash != self.policy_hash

    def _install(self, policy: Policy, enforcer: PolicyEnforcer) -> None:
        enforcer.counters = self.counters
        previous, self._active = self._active, _Active(policy, enforcer)
        if previous is None:
            logger.info("workspace %s: enforcing policy %s v%s (hash %.16s)", clean(self.workspace_id),
                        clean(policy.policy_id), clean(policy.version), policy.hash)
        else:
            logger.info("workspace %s: policy %s v%s replaced by %s v%s (hash %.16s)", clean(self.workspace_id),
                        clean(previous.policy.policy_id), clean(previous.policy.version), clean(policy.policy_id),
                        clean(policy.version), policy.hash)

    def _kept(self, exc: SekuireError) -> bool:
        active = self._active
        kept = (f"keeping policy {clean(active.policy.policy_id)} v{clean(active.policy.version)}" if active
                else "no policy loaded")
        logger.error("workspace %s: policy refresh failed, %s: %s", clean(self.workspace_id), kept, exc)
        return False
