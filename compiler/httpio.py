"""Bounded HTTP reads: a limit on decoded bytes, one deadline for the whole call, redirects refused.

Every HTTP answer the project reads from a party it does not control (a policy
backend, a key server, OPA, a decision-log service, an LLM server) is read
through :func:`request_bounded` or :func:`arequest_bounded`:

- the body is streamed and decoded here (``identity``, ``gzip``, ``deflate``;
  any other ``Content-Encoding`` is an error), with ``zlib``'s ``max_length``, so
  a gzip bomb is stopped as soon as the decoded size passes ``limit``, having
  inflated at most one 64 KiB step more; a ``Content-Length`` above the limit is
  refused before any byte is read;
- ``timeout`` is the deadline of the whole call (connect, send, headers, body),
  not of each read: asyncio cancels the call at the deadline; the synchronous
  path shuts the call's socket down from a watchdog thread at the deadline (and
  each read is also bounded by the time left), so a server dripping one byte
  at a time fails on time;
- a 3xx answer (except 304) is an error whose body is never read: redirects are
  not followed (httpx does not follow them unless told to; this refuses them
  even from a client that was told to).

Errors are built by the caller's ``fail(message)`` so each package keeps its own
error tree; messages name no credentials (the caller passes a redacted URL).
"""

from __future__ import annotations

import heapq
import itertools
import math
import socket
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from .textsafe import clean, redact_text

__all__ = ["ACCEPT_ENCODING", "BoundedResponse", "Fail", "arequest_bounded", "request_bounded"]

#: The Accept-Encoding these readers send (and can decode).
ACCEPT_ENCODING = "gzip, deflate"
_STEP = 64 * 1024

Fail = Callable[[str], Exception]


@dataclass(frozen=True)
class BoundedResponse:
    """A response whose body was read in full within the limit and the deadline."""

    status: int
    headers: httpx.Headers
    body: bytes


class _Decoder:
    """Decode a Content-Encoding incrementally, never producing more than ``limit`` bytes in all."""

    def __init__(self, encoding: str, limit: int, fail: Fail) -> None:
        encoding = encoding.strip().lower()
        self.fail, self.limit, self.size = fail, limit, 0
        self.parts: list[bytes] = []
        self._deflate = encoding == "deflate"
        if encoding in ("", "identity"):
            self._zlib: Any = None
        elif encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj()
        else:
            raise fail(f"unsupported Content-Encoding {encoding[:40]!r}")

    def _add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise self.fail(f"response larger than {self.limit} bytes")
        if data:
            self.parts.append(data)

    def feed(self, raw: bytes) -> None:
        if self._zlib is None:
            self._add(raw)
            return
        if self._deflate and raw:
            # "deflate" is zlib-wrapped by the RFC and raw deflate in practice: tell them apart by the header.
            self._deflate = False
            if len(raw) < 2 or (raw[0] & 0x0F) != 8 or ((raw[0] << 8) | raw[1]) % 31:
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            data = raw
            while data:
                # At most one step (64 KiB) more than the limit is ever inflated.
                out = self._zlib.decompress(data, min(_STEP, self.limit - self.size + 1))
                self._add(out)
                data = self._zlib.unconsumed_tail
        except zlib.error as exc:
            raise self.fail(f"response body does not decode: {exc}") from None

    def finish(self) -> bytes:
        if self._zlib is not None:
            try:
                self._add(self._zlib.flush(self.limit - self.size + 1))
            except zlib.error as exc:
                raise self.fail(f"response body does not decode: {exc}") from None
        return b"".join(self.parts)


def _check_head(response: httpx.Response, limit: int, fail: Fail) -> None:
    status = response.status_code
    if 300 <= status < 400 and status != 304:
        raise fail(f"HTTP {status}: redirects are not followed")
    length = response.headers.get("Content-Length")
    if length is not None and response.headers.get("Content-Encoding", "identity").strip().lower() in ("", "identity"):
        try:
            too_big = int(length) > limit
        except ValueError:
            raise fail("invalid Content-Length") from None
        if too_big:
            raise fail(f"response larger than {limit} bytes (Content-Length {int(length)})")


def _timeout(base: httpx.Timeout, remaining: float) -> httpx.Timeout:
    def clamp(value: float | None) -> float:
        return max(0.001, min(remaining, value if value is not None else math.inf))

    return httpx.Timeout(connect=clamp(base.connect), read=clamp(base.read), write=clamp(base.write), pool=clamp(base.pool))


def _headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {"Accept-Encoding": ACCEPT_ENCODING, **(headers or {})}


# -- the synchronous path: one watchdog thread shuts sockets down at their deadline --------------


class _Watchdog:
    """One daemon thread holding a heap of deadlines; at a deadline it calls the armed callback."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, list[Callable[[], None] | None]]] = []
        self._cond = threading.Condition()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, at: float) -> list[Callable[[], None] | None]:
        """A slot for a callback, fired at monotonic time ``at`` unless cleared (``slot[0] = None``)."""
        slot: list[Callable[[], None] | None] = [None]
        with self._cond:
            heapq.heappush(self._heap, (at, next(self._ids), slot))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sekuire-http-deadline", daemon=True)
                self._thread.start()
            self._cond.notify()
        return slot

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                _, _, slot = heapq.heappop(self._heap)
            callback = slot[0]
            if callback is not None:
                try:
                    callback()
                except OSError:
                    pass


_WATCHDOG = _Watchdog()


def _shutdown_callback(stream: Any) -> Callable[[], None] | None:
    try:
        sock = stream.get_extra_info("socket")
    except Exception:  # noqa: BLE001 - a transport without sockets (tests' MockTransport)
        return None
    if not isinstance(sock, socket.socket):
        return None
    return lambda: socket.socket.shutdown(sock, socket.SHUT_RDWR)


def request_bounded(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    limit: int,
    timeout: float,
    fail: Fail,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
) -> BoundedResponse:
    """Send one request on ``client`` and read its answer within ``limit`` decoded bytes and ``timeout`` seconds."""
    start = time.monotonic()
    deadline = start + timeout
    slot = _WATCHDOG.arm(deadline)
    expired = threading.Event()

    def trace(event: str, info: Mapping[str, Any]) -> None:
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            callback = _shutdown_callback(info.get("return_value"))
            if callback is not None:
                slot[0] = lambda: (expired.set(), callback())

    try:
        with client.stream(
            method, url, headers=_headers(headers), content=content,
            timeout=_timeout(client.timeout, timeout), extensions={"trace": trace},
        ) as response:
            if slot[0] is None:  # a pooled connection: arm its socket now
                callback = _shutdown_callback(response.extensions.get("network_stream"))
                if callback is not None:
                    slot[0] = lambda: (expired.set(), callback())
            _check_head(response, limit, fail)
            decoder = _Decoder(response.headers.get("Content-Encoding", ""), limit, fail)
            for raw in response.iter_raw(_STEP):
                if time.monotonic() > deadline:
                    raise fail(f"no complete answer within {timeout:g} s")
                decoder.feed(raw)
            return BoundedResponse(response.status_code, response.headers, decoder.finish())
    except httpx.HTTPError as exc:
        if expired.is_set() or time.monotonic() >= deadline:
            raise fail(f"no complete answer within {timeout:g} s") from None
        raise fail(f"request failed: {type(exc).__name__}: {clean(redact_text(str(exc)))}") from None
    finally:
        slot[0] = None


# -- the asyncio path: the event loop cancels at the deadline --------------------------------------


async def _aread(response: httpx.Response, decoder: _Decoder) -> AsyncIterator[None]:
    async for raw in response.aiter_raw(_STEP):
        decoder.feed(raw)
        yield None


async def arequest_bounded(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    limit: int,
    timeout: float,
    fail: Fail,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
) -> BoundedResponse:
    """The asyncio twin of :func:`request_bounded`."""
    import asyncio

    try:
        async with asyncio.timeout(timeout):
            async with client.stream(
                method, url, headers=_headers(headers), content=content, timeout=_timeout(client.timeout, timeout)
            ) as response:
                _check_head(response, limit, fail)
                decoder = _Decoder(response.headers.get("Content-Encoding", ""), limit, fail)
                async for _ in _aread(response, decoder):
                    pass
                return BoundedResponse(response.status_code, response.headers, decoder.finish())
    except TimeoutError:
        raise fail(f"no complete answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise fail(f"request failed: {type(exc).__name__}: {clean(redact_text(str(exc)))}") from None
