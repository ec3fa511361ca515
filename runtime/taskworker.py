"""TaskWorker: runs an agent's tasks only when the gateway allows the capability each one names.

A task is ``{"id", "capability", "args"}``. The worker asks
:meth:`PolicyGateway.check_capability` first; a deny (including an engine
failure, which is a deny) is reported as ``{"status": "denied", "rule",
"message"}`` and the handler never runs. An allowed task runs
``handlers[capability](args)`` (a function or a coroutine function) and is
reported ``done`` with its JSON result, or ``failed``: no handler, bad task,
a result that is not JSON or too large, or a handler exception. A handler's
exception leaves the process as its class name only (``handler raised
KeyError``); its text and traceback, which may hold secrets, are logged
locally.

Tasks come from two places:

- the in-process queue: :meth:`TaskWorker.submit` returns a
  :class:`concurrent.futures.Future` of the :class:`TaskResult`;
- the backend, when the worker has an ``agent_id``: every ``poll_interval``
  seconds ``GET /v1/workspaces/<ws>/agents/<agent_id>/tasks`` and, for each
  task, ``POST .../tasks/<id>/result`` (DESIGN.md section 10). A result that
  could not be posted is retried before the next poll; a failed poll backs off.

Run it as a thread (:meth:`start` / :meth:`stop`) or as an asyncio task
(:meth:`astart` / :meth:`astop`); :meth:`run_task` and :meth:`poll` (and their
async twins) do one unit of work for callers with a loop of their own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import logging
import math
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from ..compiler.errors import BackendError
from .agentapi import DEFAULT_DEADLINE, agent_url, arequest_json, request_json, sanitize
from .decision import Decision
from .errors import InvalidActionError
from .gateway import PolicyGateway
from .normalize import check_name

__all__ = ["Handler", "Task", "TaskResult", "TaskWorker"]

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Any]
Status = Literal["done", "denied", "failed"]

#: The largest result a task may report (serialised JSON).
MAX_RESULT_BYTES = 1 << 20
_MAX_UNSENT = 1000
#: How often the asyncio worker looks at the in-process queue (thread-safe, so not an asyncio.Queue).
_ASYNC_QUEUE_POLL = 0.02
_MAX_ID = 200


@dataclass(frozen=True)
class Task:
    id: str
    capability: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskResult:
    """What a task came to; :meth:`as_dict` is the body posted to the backend."""

    task_id: str
    status: Status
    result: Any = None
    rule: str | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The result body posted to the backend (DESIGN.md section 10)."""
        body: dict[str, Any] = {"status": self.status}
        if self.status == "done":
            body["result"] = self.result
        for name in ("rule", "message"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        return body


def _failed(task_id: str, message: str) -> TaskResult:
    return TaskResult(task_id, "failed", message=message)


def _read_task(item: Any) -> Task | TaskResult | None:
    """A task from the backend; a failed result for a malformed one with an id; None without a usable id."""
    if not isinstance(item, dict):
        return None
    task_id = item.get("id")
    if (not isinstance(task_id, str) or not task_id or len(task_id) > _MAX_ID or not task_id.isprintable()
            or task_id in (".", "..")):  # a dot segment would move the result URL
        return None
    capability, args = item.get("capability"), item.get("args", {})
    if not isinstance(capability, str) or not isinstance(args, dict):
        return _failed(task_id, "malformed task: 'capability' must be a string and 'args' an object")
    return Task(task_id, capability, args)


class TaskWorker:
    """Runs tasks for ``gateway``'s workspace with ``handlers`` (capability name -> handler)."""

    def __init__(
        self,
        gateway: PolicyGateway,
        handlers: Mapping[str, Handler],
        *,
        agent_id: str | None = None,
        poll_interval: float = 5.0,
        max_backoff: float = 300.0,
        backend: str | None = None,
        deadline: float = DEFAULT_DEADLINE,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Without ``agent_id`` the worker only runs submitted tasks; with one it also polls the backend."""
        for name in (poll_interval, max_backoff, deadline):
            if isinstance(name, bool) or not isinstance(name, (int, float)) or not math.isfinite(name) or name <= 0:
                raise ValueError(f"poll_interval, max_backoff and deadline must be positive seconds, not {name!r}")
        self.gateway = gateway
        self.handlers = dict(handlers)
        self.agent_id = None if agent_id is None else check_name(agent_id, "agent_id")
        self.poll_interval = float(poll_interval)
        self.max_backoff = max(float(max_backoff), self.poll_interval)
        self.deadline = float(deadline)
        self.backend = (backend or gateway.client.backend).rstrip("/")
        self._headers = dict(headers or {})
        self._queue: queue.Queue[tuple[Task, concurrent.futures.Future[TaskResult]] | None] = queue.Queue()
        self._unsent: list[TaskResult] = []
        self._poll_failures = 0
        self._random = random.Random()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    # -- one task ---------------------------------------------------------------------

    def submit(self, capability: str, args: Mapping[str, Any] | None = None, *, task_id: str | None = None
               ) -> concurrent.futures.Future[TaskResult]:
        """Queue a task in process; the future resolves when the running worker has judged (and maybe run) it."""
        future: concurrent.futures.Future[TaskResult] = concurrent.futures.Future()
        self._queue.put((Task(task_id or uuid.uuid4().hex, capability, dict(args or {})), future))
        return future

    def run_task(self, task: Task) -> TaskResult:
        """Check ``task.capability`` and run its handler only if allowed."""
        refused = self._refusal(task, self._check(task))
        if refused is not None:
            return refused
        handler = self.handlers[task.capability]
        try:
            result = handler(dict(task.args))
            if inspect.isawaitable(result):
                result = asyncio.run(_awaited(result))
        except Exception as exc:
            return self._handler_failed(task, exc)
        return self._done(task, result)

    async def arun_task(self, task: Task) -> TaskResult:
        """The asyncio twin of :meth:`run_task`; a plain function handler runs in a worker thread."""
        try:
            decision = await self.gateway.acheck_capability(task.capability)
        except InvalidActionError as exc:
            return _failed(task.id, f"invalid capability: {sanitize(exc)}")
        refused = self._refusal(task, decision)
        if refused is not None:
            return refused
        handler = self.handlers[task.capability]
        try:
            if inspect.iscoroutinefunction(handler):
                result = await handler(dict(task.args))
            else:
                result = await asyncio.to_thread(handler, dict(task.args))
                if inspect.isawaitable(result):
                    result = await result
        except Exception as exc:
            return self._handler_failed(task, exc)
        return self._done(task, result)

    def _check(self, task: Task) -> Decision | TaskResult:
        try:
            return self.gateway.check_capability(task.capability)
        except InvalidActionError as exc:
            return _failed(task.id, f"invalid capability: {sanitize(exc)}")

    def _refusal(self, task: Task, decision: Decision | TaskResult) -> TaskResult | None:
        if isinstance(decision, TaskResult):
            return decision
        if not decision.allowed:
            first = decision.violations[0]
            logger.warning("task %s denied: %s: %s", sanitize(task.id), first.rule, first.message)
            return TaskResult(task.id, "denied", rule=first.rule, message=first.message)
        if task.capability not in self.handlers:
            return _failed(task.id, f"no handler for capability {sanitize(task.capability)}")
        return None

    def _handler_failed(self, task: Task, exc: Exception) -> TaskResult:
        logger.error("task %s (%s): the handler raised", sanitize(task.id), sanitize(task.capability), exc_info=exc)
        return _failed(task.id, f"handler raised {exc.__class__.__name__}")

    def _done(self, task: Task, result: Any) -> TaskResult:
        try:
            size = len(json.dumps(result, allow_nan=False).encode("utf-8"))
        except (TypeError, ValueError):
            return _failed(task.id, f"the handler's result ({type(result).__name__}) is not JSON")
        if size > MAX_RESULT_BYTES:
            return _failed(task.id, f"the handler's result is larger than {MAX_RESULT_BYTES} bytes")
        return TaskResult(task.id, "done", result=result)

    # -- the backend --------------------------------------------------------------------

    def _url(self, *tail: str) -> str:
        if self.agent_id is None:
            raise RuntimeError("this worker has no agent_id: it does not poll the backend")
        return agent_url(self.backend, self.gateway.workspace_id, self.agent_id, *tail)

    def _tasks(self, answer: Any, url: str) -> list[Task | TaskResult]:
        items = answer.get("tasks") if isinstance(answer, dict) else None
        if not isinstance(items, list):
            raise BackendError("expected an object with a 'tasks' array", source=url)
        tasks = [_read_task(item) for item in items]
        if None in tasks:
            logger.warning("%d task(s) from %s without a usable id were skipped", tasks.count(None), url)
        return [task for task in tasks if task is not None]

    def poll(self) -> list[TaskResult]:
        """Post results still unsent, fetch the backend's tasks, run each and post its result."""
        with httpx.Client(headers=self._headers) as client:
            self._flush(lambda r: request_json(client, "POST", self._url("tasks", r.task_id, "result"), r.as_dict(),
                                               deadline=self.deadline))
            url = self._url("tasks")
            tasks = self._tasks(request_json(client, "GET", url, deadline=self.deadline), url)
            results = [t if isinstance(t, TaskResult) else self.run_task(t) for t in tasks]
            self._unsent.extend(results)
            self._flush(lambda r: request_json(client, "POST", self._url("tasks", r.task_id, "result"), r.as_dict(),
                                               deadline=self.deadline))
        return results

    async def apoll(self) -> list[TaskResult]:
        """The asyncio twin of :meth:`poll`."""
        async with httpx.AsyncClient(headers=self._headers) as client:
            await self._aflush(client)
            url = self._url("tasks")
            tasks = self._tasks(await arequest_json(client, "GET", url, deadline=self.deadline), url)
            results = [t if isinstance(t, TaskResult) else await self.arun_task(t) for t in tasks]
            self._unsent.extend(results)
            await self._aflush(client)
        return results

    def _flush(self, post: Callable[[TaskResult], Any]) -> None:
        while self._unsent:
            try:
                post(self._unsent[0])
            except BackendError as exc:
                self._keep_unsent(exc)
                return
            self._unsent.pop(0)

    async def _aflush(self, client: httpx.AsyncClient) -> None:
        while self._unsent:
            result = self._unsent[0]
            try:
                await arequest_json(client, "POST", self._url("tasks", result.task_id, "result"), result.as_dict(),
                                    deadline=self.deadline)
            except BackendError as exc:
                self._keep_unsent(exc)
                return
            self._unsent.pop(0)

    def _keep_unsent(self, exc: BackendError) -> None:
        dropped = len(self._unsent) - _MAX_UNSENT
        if dropped > 0:
            del self._unsent[:dropped]
            logger.error("%d task result(s) could not be posted and were dropped", dropped)
        logger.warning("%d task result(s) not posted yet: %s", len(self._unsent), sanitize(exc))

    def _next_poll(self, ok: bool) -> float:
        self._poll_failures = 0 if ok else self._poll_failures + 1
        delay = min(self.max_backoff, self.poll_interval * 2.0 ** min(self._poll_failures, 30))
        return time.monotonic() + delay * self._random.uniform(0.9, 1.1)

    def _polled(self, exc: Exception | None) -> float:
        if exc is not None:
            logger.warning("polling tasks for agent %s failed: %s", self.agent_id, sanitize(exc))
        return self._next_poll(exc is None)

    # -- as a thread --------------------------------------------------------------------

    def start(self) -> TaskWorker:
        """Run submitted tasks (and poll the backend, with an agent_id) in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            raise RuntimeError("this task worker is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sekuire-taskworker", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        next_poll = time.monotonic()
        while not self._stop.is_set():
            if self.agent_id is not None and time.monotonic() >= next_poll:
                try:
                    self.poll()
                    next_poll = self._polled(None)
                except Exception as exc:  # the loop outlives any one failure
                    next_poll = self._polled(exc)
            wait = max(0.0, next_poll - time.monotonic()) if self.agent_id is not None else None
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                continue
            if item is not None:
                task, future = item
                if future.set_running_or_notify_cancel():
                    future.set_result(self.run_task(task))

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the task in hand; tasks still queued stay queued for the next start."""
        thread, self._thread = self._thread, None
        self._stop.set()
        self._queue.put(None)
        if thread is not None:
            thread.join(2 * self.deadline + 1 if timeout is None else timeout)

    def __enter__(self) -> TaskWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- as an asyncio task --------------------------------------------------------------

    async def astart(self) -> TaskWorker:
        """Run the worker as an asyncio task of the running loop until :meth:`astop`."""
        if self._task is not None:
            raise RuntimeError("this task worker is already running")
        self._task = asyncio.create_task(self._arun(), name="sekuire-taskworker")
        return self

    async def _arun(self) -> None:
        next_poll = time.monotonic()
        while True:
            if self.agent_id is not None and time.monotonic() >= next_poll:
                try:
                    await self.apoll()
                    next_poll = self._polled(None)
                except Exception as exc:
                    next_poll = self._polled(exc)
            try:
                # Never a blocking get in a thread: a cancelled wait would take an item with it.
                item = self._queue.get_nowait()
            except queue.Empty:
                await asyncio.sleep(_ASYNC_QUEUE_POLL)
                continue
            if item is not None:
                task, future = item
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(await self.arun_task(task))
                    except asyncio.CancelledError:
                        future.set_exception(RuntimeError("the task worker stopped before the task finished"))
                        raise

    async def astop(self) -> None:
        """Stop; a task in hand is cancelled and its future fails with RuntimeError."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
