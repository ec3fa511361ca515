"""PolicyEnforcer: agent actions in, OPA decisions out, violations raised (DESIGN.md sections 4, 5 and 8).

The enforcer owns policy; the engine only answers queries. For each action it

1. checks and normalises the arguments (:mod:`.normalize`; a bad argument raises
   :class:`InvalidActionError` whatever the mode),
2. builds the contract input ``{"action": ..., "context": {"agent", "workspace"}}``,
3. answers from the cache or queries ``data.sekuire.workspaces.<ws>.decision``,
4. logs the decision when audit logging is on, calls ``on_violation(rule, reason)``
   for each violation, and raises :class:`PolicyViolationError` for a deny.

Fail closed: an engine failure (OPA down, a timeout, an error or undefined
decision) is a deny with rule ``engine.unavailable``. Warn-only mode
(``warn_only=True`` or ``SEKUIRE_POLICY_DEV_OVERRIDE=true``, read once at
construction: exactly ``true`` in any case, nothing around it; any other value
is ignored with a warning) lets the caller go on; it is for development and
says so loudly: one ERROR banner per enforcer naming how it was enabled, every
ignored violation at WARNING, and ``warn_only: true`` on every decision-log event.

Log hygiene (:mod:`sekuire.compiler.textsafe`): violation messages from the
engine quote raw input, so they are escaped (control characters), stripped of
URL userinfo and cut (each quoted value at ``MAX_QUOTED`` characters, the whole
message at ``MAX_MESSAGE``) before a :class:`Violation` carries them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from types import TracebackType
from typing import Any, NamedTuple

from ..compiler.policy.document import Policy
from ..compiler.textsafe import clean
from .batch import check_many
from .cache import DecisionCache
from .counters import DecisionCounters
from .decision import ENGINE_UNAVAILABLE, Decision, PolicyViolationError, Violation
from .decision_log import DecisionLogger, DecisionSink, LoggingSink
from .explain import aexplain, explain
from .memo import AllowMemo
from .engine import EmbeddedEngine, Engine, decision_path
from .errors import EngineError
from .normalize import check_amount, check_kind, check_name, normalize_action
from .ratelimit import RateLimiter, Reservation

__all__ = ["DEV_OVERRIDE_ENV", "PolicyEnforcer"]

logger = logging.getLogger(__name__)

#: Set to ``true`` to turn every enforcer created afterwards into warn-only mode (development only).
DEV_OVERRIDE_ENV = "SEKUIRE_POLICY_DEV_OVERRIDE"

ViolationCallback = Callable[[str, str], Any]


def _dev_override() -> bool:
    """Whether ``SEKUIRE_POLICY_DEV_OVERRIDE`` is exactly ``true`` (any case, nothing around it)."""
    value = os.environ.get(DEV_OVERRIDE_ENV)
    if value is None or value == "":
        return False
    if value.lower() == "true":
        return True
    logger.warning("%s=%s is not 'true': ignored, the policy is enforced", DEV_OVERRIDE_ENV, clean(repr(value), 60))
    return False


class _Query(NamedTuple):  # a NamedTuple: made for every cold decision, at a third of a frozen dataclass' cost
    input: dict[str, Any]
    revision: str
    key: Hashable | None  # None: not cacheable


class PolicyEnforcer:
    """Enforce a verified policy on one agent's actions; thread-safe, with async twins for I/O engines."""

    def __init__(
        self,
        policy: Policy,
        warn_only: bool = False,
        on_violation: ViolationCallback | None = None,
        engine: Engine | None = None,
        *,
        agent_id: str = "default",
        cache: bool | DecisionCache[Decision] = True,
        decision_log: DecisionLogger | DecisionSink | None = None,
        rate_limiter: RateLimiter | None = None,
        counters: DecisionCounters | None = None,
    ) -> None:
        """``engine`` defaults to an :class:`EmbeddedEngine` compiled from ``policy`` (closed with the enforcer).

        ``decision_log`` defaults to a :class:`LoggingSink` when the policy sets
        ``compliance.require_audit_logging``; pass a sink or logger to send events elsewhere.
        ``rate_limiter`` may be shared by enforcers that should count together, and so may
        ``counters`` (the allowed/denied totals a heartbeat reports).
        """
        if not isinstance(policy, Policy):
            raise TypeError(f"policy must be a verified sekuire.compiler.Policy (see load_policy), not {type(policy).__name__}")
        self.policy = policy
        self.workspace_id = policy.workspace_id
        self.agent_id = check_name(agent_id, "agent_id")
        self.path = decision_path(policy.workspace_id)
        self._owns_engine = engine is None
        self.engine = engine if engine is not None else EmbeddedEngine.from_policy(policy)
        from_env = _dev_override()
        self.warn_only = warn_only or from_env
        self.on_violation = on_violation
        if isinstance(cache, DecisionCache):
            self.cache: DecisionCache[Decision] | None = cache
        else:
            self.cache = DecisionCache(ttl=self.engine.decision_ttl) if cache else None
        self.rate_limiter = rate_limiter if rate_limiter is not None else RateLimiter()
        self.counters = counters if counters is not None else DecisionCounters()
        compliance = policy.content.compliance
        if decision_log is not None:
            self.decision_log: DecisionLogger | None = DecisionLogger.of(decision_log)
        elif compliance is not None and compliance.require_audit_logging:
            self.decision_log = DecisionLogger(LoggingSink())
        else:
            self.decision_log = None
        self._context = {"agent": self.agent_id, "workspace": self.workspace_id}
        self._memo = AllowMemo(self)  # in front of normalisation (memo.py)
        if self.warn_only:
            how = "warn_only=True" if warn_only else f"the environment ({DEV_OVERRIDE_ENV}=true)"
            logger.error(
                "WARN-ONLY MODE, POLICY NOT ENFORCED: policy %s of workspace %s (agent %s): violations are logged "
                "and allowed; enabled by %s. Development only.",
                clean(policy.policy_id), clean(policy.workspace_id), clean(self.agent_id), how,
            )

    # -- the actions of the contract ------------------------------------------------

    def enforce_tool(self, name: str, args: Mapping[str, Any] | None = None) -> Decision:
        """Allow running the tool ``name``, or raise PolicyViolationError (rule and reason of the first violation).

        ``args`` (a JSON object, :mod:`.args`) becomes ``input.action.args`` for extension rules to decide on.
        """
        if args is None and type(name) is str and (hit := self._memo.hit(("tool", name, None))) is not None:
            return hit
        return self._enforce({"type": "tool", "name": name, "args": args})

    def enforce_capability(self, name: str, args: Mapping[str, Any] | None = None) -> Decision:
        """Allow the capability ``name`` (``github:create_issue``; the tool lists), or raise PolicyViolationError."""
        if args is None and type(name) is str and (hit := self._memo.hit(("capability", name, None))) is not None:
            return hit
        return self._enforce({"type": "capability", "name": name, "args": args})

    def enforce_network(self, host: str, protocol: str = "https") -> Decision:
        """Allow a connection to ``host`` over ``protocol``, or raise PolicyViolationError."""
        if type(host) is str and type(protocol) is str and (hit := self._memo.hit(("network", host, protocol))):
            return hit
        return self._enforce({"type": "network", "host": host, "protocol": protocol})

    def enforce_filesystem(self, path: str | os.PathLike[str], operation: str = "read") -> Decision:
        """Allow ``operation`` on ``path`` (normalised lexically first), or raise PolicyViolationError."""
        if type(path) is str and type(operation) is str and (hit := self._memo.hit(("filesystem", path, operation))):
            return hit
        return self._enforce({"type": "filesystem", "path": path, "operation": operation})

    def enforce_api(self, name: str) -> Decision:
        """Allow calling the API ``name`` (``permissions.apis``), or raise PolicyViolationError."""
        if type(name) is str and (hit := self._memo.hit(("api", name))) is not None:
            return hit
        return self._enforce({"type": "api", "name": name})

    def enforce_model(self, name: str, provider: str | None = None) -> Decision:
        """Allow the model ``name`` (its provider given or inferred from the name), or raise PolicyViolationError."""
        if type(name) is str and (provider is None or type(provider) is str) and (
            hit := self._memo.hit(("model", name, provider))
        ):
            return hit
        return self._enforce({"type": "model", "name": name, "provider": provider})

    def enforce_rate_limit(self, kind: str, amount: int = 1) -> Decision:
        """Count ``amount`` requests or tokens against the policy's limits; counted only when allowed."""
        kind, amount = check_kind(kind), check_amount(amount)  # normalize_action's checks, without the dicts
        with self.rate_limiter.reserve(self._rate_key(kind), amount) as reservation:
            action = {"type": "rate_limit", "kind": kind, "amount": amount, "usage": reservation.usage}
            decision = self._decide(action, cacheable=False)
            if decision.allow:
                reservation.commit()
        return self._conclude(decision)

    async def aenforce_tool(self, name: str, args: Mapping[str, Any] | None = None) -> Decision:
        """Async twin of :meth:`enforce_tool`."""
        return await self._aenforce({"type": "tool", "name": name, "args": args})

    async def aenforce_capability(self, name: str, args: Mapping[str, Any] | None = None) -> Decision:
        """Async twin of :meth:`enforce_capability`."""
        return await self._aenforce({"type": "capability", "name": name, "args": args})

    async def aenforce_network(self, host: str, protocol: str = "https") -> Decision:
        """Async twin of :meth:`enforce_network`."""
        return await self._aenforce({"type": "network", "host": host, "protocol": protocol})

    async def aenforce_filesystem(self, path: str | os.PathLike[str], operation: str = "read") -> Decision:
        """Async twin of :meth:`enforce_filesystem`."""
        return await self._aenforce({"type": "filesystem", "path": path, "operation": operation})

    async def aenforce_api(self, name: str) -> Decision:
        """Async twin of :meth:`enforce_api`."""
        return await self._aenforce({"type": "api", "name": name})

    async def aenforce_model(self, name: str, provider: str | None = None) -> Decision:
        """Async twin of :meth:`enforce_model`."""
        return await self._aenforce({"type": "model", "name": name, "provider": provider})

    async def aenforce_rate_limit(self, kind: str, amount: int = 1) -> Decision:
        """Async twin of :meth:`enforce_rate_limit`."""
        action = normalize_action({"type": "rate_limit", "kind": kind, "amount": amount})
        # A reservation, not a lock, spans the await: other coroutines and threads see it at once.
        with self._reserve(action) as reservation:
            decision = await self._adecide({**action, "usage": reservation.usage}, cacheable=False)
            if decision.allow:
                reservation.commit()
        return self._conclude(decision)

    def record_usage(self, kind: str, amount: int) -> None:
        """Count usage that already happened, without a decision (tokens a response reports beyond a reservation)."""
        self.rate_limiter.consume(self._rate_key(check_kind(kind)), check_amount(amount))

    def check(self, action: Mapping[str, Any]) -> Decision:
        """The decision for an ``input.action`` object, without raising for a deny or an engine failure.

        No callbacks run and nothing is counted: a rate-limit action is judged
        against the current usage (a dry run).
        """
        return self._decide(self._dry_run(normalize_action(action)))

    async def acheck(self, action: Mapping[str, Any]) -> Decision:
        """Async twin of :meth:`check`."""
        return await self._adecide(self._dry_run(normalize_action(action)))

    def check_many(self, actions: Sequence[Mapping[str, Any]]) -> list[Decision]:
        """:meth:`check` for each of ``actions``, in order, never raising (bad actions are ``input.invalid``).

        Tool and capability names are decided in one engine query where the bundle allows it (:mod:`.batch`).
        """
        return check_many(self, actions)

    async def acheck_many(self, actions: Sequence[Mapping[str, Any]]) -> list[Decision]:
        """Async twin of :meth:`check_many` (run in a worker thread: the batch query is synchronous)."""
        return await asyncio.to_thread(check_many, self, actions)

    def explain(self, action: Mapping[str, Any]) -> Decision:
        """:meth:`check` with the why (:mod:`.explain`): ``Violation.entry`` and ``Decision.allowed_by`` are set.

        One query of the library's ``explain`` entry point, never cached or counted; ``str`` of
        :meth:`Decision.explain` reads it out.
        """
        return explain(self, action)

    async def aexplain(self, action: Mapping[str, Any]) -> Decision:
        """Async twin of :meth:`explain`."""
        return await aexplain(self, action)

    # -- the machinery ---------------------------------------------------------------

    def _enforce(self, action: Mapping[str, Any]) -> Decision:
        key, revision = self._memo.key(action)
        if key is not None and (hit := self._memo.hit(key)) is not None:
            return hit
        decision = self._conclude(self._decide(normalize_action(action)))
        if key is not None and decision.allow:
            self._memo.remember(key, revision, decision)
        return decision

    async def _aenforce(self, action: Mapping[str, Any]) -> Decision:
        key, revision = self._memo.key(action)
        if key is not None and (hit := self._memo.hit(key)) is not None:
            return hit
        decision = self._conclude(await self._adecide(normalize_action(action)))
        if key is not None and decision.allow:
            self._memo.remember(key, revision, decision)
        return decision

    def _rate_key(self, kind: str) -> tuple[str, str, str]:
        return (self.workspace_id, self.agent_id, kind)

    def _reserve(self, action: Mapping[str, Any]) -> Reservation:
        return self.rate_limiter.reserve(self._rate_key(action["kind"]), action["amount"])

    def _dry_run(self, action: dict[str, Any]) -> dict[str, Any]:
        if action["type"] == "rate_limit":
            action["usage"] = self.rate_limiter.usage(self._rate_key(action["kind"]))
        return action

    def _query(self, action: Mapping[str, Any], cacheable: bool) -> tuple[_Query, Decision | None]:
        """The engine input, and the cached decision for it if there is one."""
        input = {"action": action, "context": self._context}  # noqa: A001 - OPA's name
        try:
            revision = self.engine.revision
        except EngineError:
            revision = ""  # unknown: not cached; the query itself will tell whether the engine answers
        # Rate-limit decisions depend on counters, not only on the input.
        if self.cache is None or not cacheable or action["type"] == "rate_limit":
            return _Query(input, revision, None), None
        # normalize_action gives a flat action in a fixed field order with str/int values (never bool),
        # so its items are a faithful key; path and agent keep a cache shared by enforcers apart.
        items = tuple(action.items())
        if "args" in action:  # a JSON object: keyed by its canonical text (checked, so it serialises)
            items = tuple((k, json.dumps(v, sort_keys=True, separators=(",", ":")) if k == "args" else v) for k, v in items)
        query = _Query(input, revision, (self.path, self.agent_id, items))
        return query, self.cache.get(revision, query.key)

    def _decide(self, action: Mapping[str, Any], *, cacheable: bool = True) -> Decision:
        query, cached = self._query(action, cacheable)
        if cached is not None:
            return self._record(query, cached)
        started = time.perf_counter_ns() if self.decision_log is not None else 0
        try:
            decision = self.engine.decide(self.path, query.input)
        except EngineError as exc:
            return self._record(query, Decision.failure(str(exc)), failed=True, started=started)
        return self._record(query, decision, fresh=True, started=started)

    async def _adecide(self, action: Mapping[str, Any], *, cacheable: bool = True) -> Decision:
        query, cached = self._query(action, cacheable)
        if cached is not None:
            return self._record(query, cached)
        started = time.perf_counter_ns() if self.decision_log is not None else 0
        try:
            decision = await self.engine.adecide(self.path, query.input)
        except EngineError as exc:
            return self._record(query, Decision.failure(str(exc)), failed=True, started=started)
        return self._record(query, decision, fresh=True, started=started)

    def _record(self, query: _Query, decision: Decision, *, fresh: bool = False, failed: bool = False,
                started: int = 0) -> Decision:
        self.counters.count(decision.allow)
        if fresh and self.cache is not None and query.key is not None:
            # Stored under the revision read *before* the query: if the engine moved on meanwhile,
            # the entry is never looked up again.
            self.cache.put(query.revision, query.key, decision)
        if self.decision_log is not None:
            # OPA's decision_id when the engine asked an OPA that logs (one decision, one id in both logs);
            # a cached decision is a new decision: a new id.
            self.decision_log.log(
                path=self.path,
                input=query.input,
                result=None if failed else decision.log_result(),
                error=decision.violations[0].message if failed else None,
                bundles=self.engine.bundles,
                warn_only=self.warn_only,
                decision_id=self.engine.decision_id() if started else None,
                version=self.engine.version,
                metrics={"timer_rego_query_eval_ns": time.perf_counter_ns() - started} if started else None,
                requested_by=self.agent_id,
            )
        return decision

    def _conclude(self, decision: Decision) -> Decision:
        if decision.allow:
            return decision
        for violation in decision.violations:
            self._notify(violation)
        first = decision.violations[0]
        if first.rule == ENGINE_UNAVAILABLE:
            log = logger.error if self.warn_only else logger.warning
            log("no policy decision (%s); %s", first.message, "WARN-ONLY: proceeding" if self.warn_only else "denying")
        elif self.warn_only:
            for violation in decision.violations:
                logger.warning("policy violation ignored (warn-only): %s: %s", violation.rule, violation.message)
        if self.warn_only:
            return decision
        raise PolicyViolationError(first.rule, first.message, decision)

    def _notify(self, violation: Violation) -> None:
        if self.on_violation is None:
            return
        try:
            self.on_violation(violation.rule, violation.message)
        except Exception:
            # The deny stands whatever the callback does.
            logger.exception("on_violation callback failed for %s", violation.rule)

    def close(self) -> None:
        """Close the engine if the enforcer made it (an engine or sink passed in is the caller's to close)."""
        if self._owns_engine:
            self.engine.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        if self._owns_engine:
            await self.engine.aclose()

    def __enter__(self) -> PolicyEnforcer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
