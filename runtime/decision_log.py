"""Decision logs in OPA's event format, so the runtime's decisions land where OPA's do.

An event is what OPA's decision-log plugin reports, field for field:
``decision_id`` (OPA's own when an OPA that logs decided, so the two events
correlate; else uuid4), ``labels`` (``id``, ``version`` of the deciding
engine, configured labels), ``bundles`` (``{name: {"revision"}}``, the names
OPA uses: ``sekuire-<ws>``), ``path``, ``input``, ``result`` (or ``error``),
``requested_by``, ``timestamp`` (RFC 3339, UTC), ``metrics`` and ``req_id``;
masked as OPA masks (``erased``, ``masked``: :mod:`.masking`). Sinks:

- :class:`FileSink`: one JSON object per line, appended;
- :class:`HTTPSink`: batches POSTed as a gzip-compressed JSON array, as OPA
  uploads to a decision-log service (``Content-Encoding: gzip``, default
  resource ``/logs``), from a background thread with a bounded buffer; when the
  buffer is full, new events are dropped and counted, never blocking a decision;
  the service's answer is read bounded (64 KiB, one deadline of ``timeout``
  seconds per upload, a redirect is a failure; :mod:`sekuire.compiler.httpio`);
- :class:`LoggingSink`: each event as one INFO record of this module's logger.

Logging never changes a decision: :class:`DecisionLogger` catches and counts
every sink failure.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import threading
import time
import itertools
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import httpx

from ..compiler.httpio import request_bounded
from ..compiler.textsafe import MAX_MESSAGE, clean, redact_text, redact_url
from ..compiler.version import __version__
from .masking import Mask, MaskRule

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_RESOURCE",
    "DecisionLogger",
    "DecisionSink",
    "FileSink",
    "HTTPSink",
    "LoggingSink",
    "decision_event",
]

logger = logging.getLogger(__name__)

DEFAULT_RESOURCE = "/logs"
#: Events per upload.
DEFAULT_BATCH_SIZE = 100
#: Events held while the log service is slow or down; beyond this, new events are dropped and counted.
DEFAULT_BUFFER_SIZE = 10_000
#: Seconds between uploads of a partial batch.
DEFAULT_FLUSH_INTERVAL = 1.0
_MAX_BACKOFF = 30.0

#: The most of a log service's answer that is read (only its status matters).
_MAX_ANSWER_BYTES = 64 * 1024


class _UploadFailed(Exception):
    """An upload that got no acceptable answer (internal: counted and logged, never raised to callers)."""


# One id per process, like OPA's per-instance label.
_INSTANCE_ID = str(uuid.uuid4())


def _timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decision_event(
    *,
    path: str,
    input: Mapping[str, Any],  # noqa: A002 - OPA's name
    result: Any = None,
    error: str | None = None,
    bundles: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    warn_only: bool = False,
    decision_id: str | None = None,
    version: str = "",
    metrics: Mapping[str, int] | None = None,
    req_id: int = 0,
    requested_by: str = "",
) -> dict[str, Any]:
    """One decision-log event in OPA's format; ``error`` instead of ``result`` when there was no decision.

    Fields and their meaning follow OPA's decision-log plugin: ``decision_id`` (OPA's own when the decision came
    from an OPA that logs, else a new uuid4), ``labels`` (``id`` of this process, ``version`` of the engine that
    decided, then the configured labels), ``bundles`` with revisions, ``path``, ``input``, ``result``,
    ``requested_by``, ``timestamp`` (RFC 3339, UTC), ``metrics`` (``timer_*_ns``) and ``req_id``.
    ``warn_only``: the enforcer did not enforce this decision (the event gets ``"warn_only": true``).
    Strings of ``input`` lose URL userinfo; ``error`` is escaped and cut (:mod:`sekuire.compiler.textsafe`).
    """
    event: dict[str, Any] = {
        "decision_id": decision_id or str(uuid.uuid4()),
        "labels": {"id": _INSTANCE_ID, "version": version or f"sekuire-{__version__}", **(labels or {})},
        "bundles": {name: {"revision": revision} for name, revision in (bundles or {}).items()},
        "path": path,
        "input": _redacted(input),
        "requested_by": requested_by,
        "timestamp": _timestamp(),
        "metrics": dict(metrics or {}),
        "req_id": req_id,
    }
    if error is None:
        event["result"] = result
    else:
        event["error"] = {"code": "engine_error", "message": clean(redact_text(error), MAX_MESSAGE)}
    if warn_only:
        event["warn_only"] = True
    return event


def _redacted(value: Any) -> Any:
    """``value`` with URL userinfo removed from every string in it (a copy only where something changed)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    return value


class DecisionSink(Protocol):
    """Where events go; ``emit`` must be fast (no network I/O on the caller's thread)."""

    def emit(self, event: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class LoggingSink:
    """Each event as one JSON INFO record of ``sekuire.runtime.decision_log``; the default for audit-logging policies."""

    def emit(self, event: Mapping[str, Any]) -> None:
        """Log one event as one ASCII-only JSON line at INFO on this module's logger."""
        # ASCII only: no C1 control, bidi override or line separator reaches a log line raw.
        logger.info("%s", json.dumps(event, separators=(",", ":"), ensure_ascii=True))

    def close(self) -> None:
        """Nothing to release: the logging system owns its handlers."""
        pass


class FileSink:
    """Events appended to ``path`` as JSON lines; each line is written whole and flushed."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file: Any = None

    def emit(self, event: Mapping[str, Any]) -> None:
        """Append one event as a JSON line (OPA's decision-log event format)."""
        line = json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n"
        with self._lock:
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open until close()
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class HTTPSink:
    """Batches of events POSTed gzip-compressed to ``url + resource`` by a background thread.

    A failed upload is kept and retried with exponential backoff (up to 30 s).
    Call :meth:`close` before exit to upload what is still buffered.
    """

    def __init__(
        self,
        url: str,
        *,
        resource: str = DEFAULT_RESOURCE,
        headers: Mapping[str, str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        timeout: float = 5.0,
    ) -> None:
        self.endpoint = url.rstrip("/") + "/" + resource.lstrip("/")
        self.batch_size = batch_size
        self.buffer_size = buffer_size
        self.flush_interval = flush_interval
        #: Events dropped because the buffer was full, and events given up after close.
        self.dropped = 0
        #: Events the service accepted.
        self.sent = 0
        self.timeout = timeout
        self._shown = redact_url(self.endpoint)
        self._client = httpx.Client(timeout=timeout, headers=dict(headers or {}))
        self._buffer: deque[Mapping[str, Any]] = deque()
        self._in_flight = 0
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="sekuire-decision-log", daemon=True)
        self._thread.start()

    def emit(self, event: Mapping[str, Any]) -> None:
        """POST one event, gzipped as OPA's decision-log plugin sends it (bounded answer read)."""
        with self._cond:
            if self._closing or len(self._buffer) + self._in_flight >= self.buffer_size:
                self.dropped += 1
                return
            self._buffer.append(event)
            if len(self._buffer) >= self.batch_size:
                self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Ask for an upload now and wait until the buffer is empty; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while self._buffer or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float = 10.0) -> None:
        """Upload what is buffered (for at most ``timeout`` seconds), then stop the thread."""
        self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        self._client.close()

    def _run(self) -> None:
        failures = 0
        while True:
            with self._cond:
                if not self._closing and len(self._buffer) < self.batch_size:
                    self._cond.wait(self.flush_interval)
                if self._closing:
                    self.dropped += len(self._buffer)
                    self._buffer.clear()
                    self._cond.notify_all()
                    return
                batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
                self._in_flight = len(batch)
            if not batch:
                continue
            ok = self._upload(batch)
            with self._cond:
                self._in_flight = 0
                if ok:
                    self.sent += len(batch)
                    failures = 0
                else:
                    # Keep the batch for the next attempt, oldest first.
                    self._buffer.extendleft(reversed(batch))
                    failures += 1
                self._cond.notify_all()
                if not ok:
                    self._cond.wait(min(_MAX_BACKOFF, self.flush_interval * 2**failures))

    def _upload(self, batch: list[Mapping[str, Any]]) -> bool:
        body = gzip.compress(json.dumps(batch, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        try:
            # The answer is not needed, only its status: read at most a little of it, within one deadline.
            response = request_bounded(
                self._client, "POST", self.endpoint, content=body, limit=_MAX_ANSWER_BYTES, timeout=self.timeout,
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}, fail=_UploadFailed,
            )
        except _UploadFailed as exc:
            logger.warning("decision log upload to %s failed: %s", self._shown, exc)
            return False
        if not 200 <= response.status < 300:
            logger.warning("decision log upload to %s failed: HTTP %d", self._shown, response.status)
            return False
        return True


class DecisionLogger:
    """Builds events and hands them to sinks; a failing sink is counted and logged, never raised."""

    def __init__(
        self, *sinks: DecisionSink, labels: Mapping[str, str] | None = None, mask: Iterable[MaskRule] = ()
    ) -> None:
        """``labels`` join OPA's ``id`` and ``version``; ``mask`` rules (OPA's ``system.log.mask`` semantics:
        :class:`~sekuire.runtime.masking.Mask`) apply to every event before any sink sees it."""
        self.sinks: tuple[DecisionSink, ...] = sinks
        self.labels = dict(labels or {})
        self.mask = Mask(mask)
        #: Events some sink failed to take.
        self.errors = 0
        self._lock = threading.Lock()
        self._requests = itertools.count(1)

    def _failed(self) -> None:
        with self._lock:
            self.errors += 1

    @classmethod
    def of(cls, target: DecisionLogger | DecisionSink) -> DecisionLogger:
        """``target`` itself if it is a logger, else a logger writing to that one sink."""
        return target if isinstance(target, DecisionLogger) else cls(target)

    def __enter__(self) -> DecisionLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log(
        self,
        *,
        path: str,
        input: Mapping[str, Any],  # noqa: A002
        result: Any = None,
        error: str | None = None,
        bundles: Mapping[str, str] | None = None,
        warn_only: bool = False,
        decision_id: str | None = None,
        version: str = "",
        metrics: Mapping[str, int] | None = None,
        requested_by: str = "",
    ) -> str | None:
        """Record one decision (masked); return its ``decision_id`` (None if the event could not even be built)."""
        try:
            event = decision_event(path=path, input=input, result=result, error=error, bundles=bundles,
                                   labels=self.labels, warn_only=warn_only, decision_id=decision_id,
                                   version=version, metrics=metrics, req_id=next(self._requests),
                                   requested_by=requested_by)
            if self.mask:
                event = self.mask.apply(event)
        except Exception:  # noqa: BLE001 - a log must never change a decision
            self._failed()
            logger.exception("cannot build a decision-log event")
            return None
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception as exc:  # noqa: BLE001
                self._failed()
                logger.warning("decision-log sink %s failed: %s", type(sink).__name__, exc)
        return str(event["decision_id"])

    def close(self) -> None:
        """Close every sink (flushing what they buffer)."""
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001
                logger.warning("closing decision-log sink %s failed: %s", type(sink).__name__, exc)
