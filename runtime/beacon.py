"""Beacon: an agent's heartbeat to the backend, and the policy swap its answers announce.

Every ``interval`` seconds (jittered by +-``jitter``, so a fleet started
together does not beat together) the beacon posts to
``/v1/workspaces/<ws>/agents/<agent_id>/heartbeat`` (DESIGN.md section 10)::

    {"status": "active" | "degraded", "policy_hash": ..., "bundle_revision": ...,
     "decisions": {"allowed": n, "denied": m}, "timestamp": "2026-12-02T17:00:00Z"}

and hands the answer to :meth:`PolicyGateway.on_heartbeat_response`, which
swaps in the announced policy (verified by the gateway's client, as always).
``decisions`` counts the gateway's decisions since the last beat the backend
acknowledged: a failed beat's counts travel with the next one. ``status`` is
``degraded`` while the gateway enforces a policy other than the one last
announced (its refresh failed).

Failures never touch enforcement: a backend that is down, slow, answers
garbage or an invalid hash leaves the gateway enforcing its last verified
policy. The beacon logs, backs off exponentially (``interval * 2**n``, capped
at ``max_backoff``) and beats on. An answer's ``next_heartbeat_s`` is
honoured within ``[MIN_INTERVAL, max_backoff]``. Reads are bounded (a byte
cap and a total deadline per request, :mod:`.agentapi`).

Run it as a thread (:meth:`Beacon.start` / :meth:`Beacon.stop`) with a
gateway over a :class:`PolicyClient`, or as an asyncio task
(:meth:`Beacon.astart` / :meth:`Beacon.astop`) with either client.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from ..compiler.errors import BackendError
from .agentapi import DEFAULT_DEADLINE, agent_url, arequest_json, request_json, sanitize
from .client import AsyncPolicyClient, PolicyClient
from .counters import DecisionCounts
from .errors import SekuireRuntimeError
from .gateway import PolicyGateway
from .normalize import check_name

__all__ = ["Beacon", "MIN_INTERVAL"]

logger = logging.getLogger(__name__)

#: The shortest interval a backend's ``next_heartbeat_s`` can ask for.
MIN_INTERVAL = 1.0
#: A heartbeat answer is a small object.
_MAX_ANSWER_BYTES = 1 << 16


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


class Beacon:
    """Heartbeats of ``agent_id`` for ``gateway``'s workspace, to the backend of the gateway's client."""

    def __init__(
        self,
        gateway: PolicyGateway,
        agent_id: str,
        interval: float = 30.0,
        *,
        backend: str | None = None,
        jitter: float = 0.1,
        max_backoff: float = 300.0,
        deadline: float = DEFAULT_DEADLINE,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """``backend`` defaults to the gateway's client's; ``headers`` go with every request (e.g. authorization)."""
        self.gateway = gateway
        self.agent_id = check_name(agent_id, "agent_id")
        self.interval = _positive("interval", interval)
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), not {jitter!r}")
        self.jitter = jitter
        self.max_backoff = max(_positive("max_backoff", max_backoff), self.interval)
        self.deadline = _positive("deadline", deadline)
        self.backend = (backend or gateway.client.backend).rstrip("/")
        self.url = agent_url(self.backend, gateway.workspace_id, self.agent_id, "heartbeat")
        self._headers = dict(headers or {})
        #: Beats the backend answered, beats that failed in a row, the last failure (one line).
        self.beats = 0
        self.failures = 0
        self.last_error: str | None = None
        self._acknowledged = DecisionCounts()
        self._degraded = False
        self._random = random.Random()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None
        self._task: asyncio.Task[None] | None = None

    # -- one heartbeat ----------------------------------------------------------------

    def beat(self) -> float:
        """Send one heartbeat now and act on its answer; returns the delay until the next one."""
        if self._client is None:
            with httpx.Client(headers=self._headers) as client:
                return self._beat(client)
        return self._beat(self._client)

    async def abeat(self) -> float:
        """The asyncio twin of :meth:`beat`."""
        async with httpx.AsyncClient(headers=self._headers) as client:
            return await self._abeat(client)

    def _beat(self, client: httpx.Client) -> float:
        body, totals = self._body()
        try:
            answer = self._answer(request_json(client, "POST", self.url, body, max_bytes=_MAX_ANSWER_BYTES,
                                               deadline=self.deadline))
        except BackendError as exc:
            return self._failed(exc)
        self._acknowledged = totals
        try:
            in_step = self.gateway.on_heartbeat_response(answer)
        except Exception as exc:  # never let a refresh bug stop the heartbeat or the enforcement
            logger.exception("heartbeat of agent %s: the gateway could not act on the answer", self.agent_id)
            in_step = False
            self.last_error = sanitize(exc)
        return self._succeeded(answer, in_step)

    async def _abeat(self, client: httpx.AsyncClient) -> float:
        body, totals = self._body()
        try:
            answer = self._answer(await arequest_json(client, "POST", self.url, body, max_bytes=_MAX_ANSWER_BYTES,
                                                      deadline=self.deadline))
        except BackendError as exc:
            return self._failed(exc)
        self._acknowledged = totals
        try:
            if isinstance(self.gateway.client, AsyncPolicyClient):
                in_step = await self.gateway.aon_heartbeat_response(answer)
            else:
                in_step = await asyncio.to_thread(self.gateway.on_heartbeat_response, answer)
        except Exception as exc:
            logger.exception("heartbeat of agent %s: the gateway could not act on the answer", self.agent_id)
            in_step = False
            self.last_error = sanitize(exc)
        return self._succeeded(answer, in_step)

    # -- the I/O-free parts ------------------------------------------------------------

    def _body(self) -> tuple[dict[str, Any], DecisionCounts]:
        totals = self.gateway.counters.snapshot()
        revision: str | None = None
        try:
            revision = self.gateway.enforcer.engine.revision or None
        except SekuireRuntimeError:  # not initialised yet: the first answer may install a policy
            revision = None
        body = {
            "status": "degraded" if self._degraded else "active",
            "policy_hash": self.gateway.policy_hash,
            "bundle_revision": revision,
            "decisions": (totals - self._acknowledged).as_dict(),
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        return body, totals

    def _answer(self, answer: Any) -> dict[str, Any]:
        if not isinstance(answer, dict):
            raise BackendError("expected a JSON object", source=self.url)
        return answer

    def _failed(self, exc: BackendError) -> float:
        self.failures += 1
        self.last_error = sanitize(exc)
        delay = min(self.max_backoff, self.interval * 2.0 ** min(self.failures, 30))
        logger.warning("heartbeat of agent %s failed (%d in a row), next in %.1f s: %s", self.agent_id,
                       self.failures, delay, self.last_error)
        return self._jittered(delay)

    def _succeeded(self, answer: Mapping[str, Any], in_step: bool) -> float:
        if self.failures:
            logger.info("heartbeat of agent %s answered again after %d failure(s)", self.agent_id, self.failures)
        self.beats += 1
        self.failures = 0
        self._degraded = not in_step
        if in_step:
            self.last_error = None
        hint = answer.get("next_heartbeat_s")
        delay = self.interval
        if isinstance(hint, (int, float)) and not isinstance(hint, bool) and math.isfinite(hint) and hint > 0:
            delay = min(max(float(hint), MIN_INTERVAL), self.max_backoff)
        elif hint is not None:
            logger.warning("heartbeat answer has an invalid next_heartbeat_s (%s); ignored", type(hint).__name__)
        return self._jittered(delay)

    def _jittered(self, delay: float) -> float:
        return delay * self._random.uniform(1 - self.jitter, 1 + self.jitter)

    # -- as a thread -------------------------------------------------------------------

    def start(self) -> Beacon:
        """Beat now and then every interval in a daemon thread, until :meth:`stop`."""
        if not isinstance(self.gateway.client, PolicyClient):
            raise TypeError("this gateway has an AsyncPolicyClient: run the beacon with astart()")
        if self._thread is not None:
            raise RuntimeError("this beacon is already running")
        self._stop.clear()
        self._client = httpx.Client(headers=self._headers)
        self._thread = threading.Thread(target=self._run, name=f"sekuire-beacon-{self.agent_id}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._client is not None
        delay = 0.0
        while not self._stop.wait(delay):
            try:
                delay = self._beat(self._client)
            except Exception as exc:  # a bug must not end the heartbeat silently
                delay = self._failed(BackendError(f"unexpected {exc.__class__.__name__}: {sanitize(exc)}",
                                                  source=self.url))

    def stop(self, timeout: float | None = None) -> None:
        """Stop beating; waits for a heartbeat in flight (at most about twice the deadline by default)."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(2 * self.deadline + 1 if timeout is None else timeout)
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> Beacon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- as an asyncio task ------------------------------------------------------------

    async def astart(self) -> Beacon:
        """Beat now and then every interval in an asyncio task of the running loop, until :meth:`astop`."""
        if self._task is not None:
            raise RuntimeError("this beacon is already running")
        self._task = asyncio.create_task(self._arun(), name=f"sekuire-beacon-{self.agent_id}")
        return self

    async def _arun(self) -> None:
        async with httpx.AsyncClient(headers=self._headers) as client:
            delay = 0.0
            while True:
                await asyncio.sleep(delay)
                try:
                    delay = await self._abeat(client)
                except Exception as exc:
                    delay = self._failed(BackendError(f"unexpected {exc.__class__.__name__}: {sanitize(exc)}",
                                                      source=self.url))

    async def astop(self) -> None:
        """Stop beating (a heartbeat in flight is cancelled)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def __aenter__(self) -> Beacon:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()
