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

import base64
import math
import socket
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from .textsafe import clean, redact_text

__all__ = [
    "ACCEPT_ENCODING",
    "BoundedResponse",
    "Fail",
    "WATCHDOG",
    "Watchdog",
    "aread_body",
    "arequest_bounded",
    "check_head",
    "read_body",
    "request_bounded",
    "shutdown_socket",
    "userinfo_as_header",
]

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


def check_head(response: httpx.Response, limit: int, fail: Fail) -> None:
    """Refuse a redirect, and a declared Content-Length over ``limit``, before any body byte is read."""
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


def userinfo_as_header(url: str, headers: Mapping[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """``https://user:pass@host/...`` -> the URL without its userinfo, and an ``Authorization: Basic`` header.

    httpx sends URL userinfo as Basic credentials too, but its INFO log line ("HTTP Request: GET <url>") prints
    the URL whole, password included. Requests made here therefore carry the credentials in a header, where no
    log line shows them. An ``Authorization`` header the caller gives wins; the userinfo is dropped either way.
    """
    parsed = httpx.URL(url)
    out = dict(headers or {})
    if not parsed.userinfo:
        return url, out
    if not any(name.lower() == "authorization" for name in out):
        token = base64.b64encode(f"{parsed.username}:{parsed.password}".encode()).decode("ascii")
        out["Authorization"] = f"Basic {token}"
    return str(parsed.copy_with(userinfo=b"")), out


# -- the synchronous path: a watchdog thread shuts a call's socket down at its deadline -------------


class Watchdog:
    """Calls a callback when a watched call passes its deadline; one daemon thread polling every 50 ms.

    ``watch``/``unwatch`` are a dict store each (no thread wake-up while the watchdog is
    busy), so the hot path of :class:`~sekuire.runtime.OPAEngine` can use it per decision.
    A deadline fires at most :data:`POLL` seconds late.
    """

    POLL = 0.05

    def __init__(self) -> None:
        self._calls: dict[object, tuple[float, Callable[[], None]]] = {}
        self._cond = threading.Condition()
        self._idle = True
        self._thread: threading.Thread | None = None

    def watch(self, key: object, deadline: float, callback: Callable[[], None]) -> None:
        """Fire ``callback`` at monotonic ``deadline`` unless ``unwatch(key)`` comes first."""
        self._calls[key] = (deadline, callback)
        if self._idle:
            with self._cond:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="sekuire-http-deadline", daemon=True)
                    self._thread.start()
                self._idle = False
                self._cond.notify()

    def unwatch(self, key: object) -> None:
        self._calls.pop(key, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._calls:
                    self._idle = True
                    self._cond.wait(1.0)
                    continue
            time.sleep(self.POLL)
            now = time.monotonic()
            for key, (deadline, callback) in list(self._calls.items()):
                if deadline <= now and self._calls.pop(key, None) is not None:
                    try:
                        callback()
                    except OSError:
                        pass


WATCHDOG = Watchdog()


def shutdown_socket(sock: socket.socket | None) -> None:
    """Shut ``sock`` down for both directions: a thread blocked reading it wakes up with EOF or an error."""
    if isinstance(sock, socket.socket):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the base method: also for an SSLSocket


def _stream_socket(stream: Any) -> socket.socket | None:
    try:
        sock = stream.get_extra_info("socket")
    except Exception:  # noqa: BLE001 - a transport without sockets (tests' MockTransport)
        return None
    return sock if isinstance(sock, socket.socket) else None


def read_body(response: httpx.Response, limit: int, fail: Fail, deadline: float) -> bytes:
    """Stream ``response``'s body, decoded, refusing more than ``limit`` bytes or a chunk after ``deadline``."""
    check_head(response, limit, fail)
    decoder = _Decoder(response.headers.get("Content-Encoding", ""), limit, fail)
    for raw in response.iter_raw(_STEP):
        if time.monotonic() > deadline:
            raise fail("no complete answer before the deadline")
        decoder.feed(raw)
    return decoder.finish()


async def aread_body(response: httpx.Response, limit: int, fail: Fail) -> bytes:
    """The asyncio twin of :func:`read_body` (the caller bounds it with ``asyncio.timeout``)."""
    check_head(response, limit, fail)
    decoder = _Decoder(response.headers.get("Content-Encoding", ""), limit, fail)
    async for raw in response.aiter_raw(_STEP):
        decoder.feed(raw)
    return decoder.finish()


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
    """Send one request on ``client`` and read its answer within ``limit`` decoded bytes and ``timeout`` seconds.

    A 3xx (not 304), a body over the limit, a timeout or a transport error is ``fail(message)``.
    """
    deadline = time.monotonic() + timeout
    key = object()
    expired = threading.Event()
    sockets: list[socket.socket] = []

    def on_deadline() -> None:
        expired.set()
        for sock in sockets:
            shutdown_socket(sock)

    def trace(event: str, info: Mapping[str, Any]) -> None:
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            sock = _stream_socket(info.get("return_value"))
            if sock is not None:
                sockets.append(sock)

    url, headers = userinfo_as_header(url, headers)
    WATCHDOG.watch(key, deadline, on_deadline)
    try:
        with client.stream(
            method, url, headers=_headers(headers), content=content,
            timeout=_timeout(client.timeout, timeout), extensions={"trace": trace},
        ) as response:
            sock = _stream_socket(response.extensions.get("network_stream"))
            if sock is not None and not sockets:  # a pooled connection: watch its socket from now on
                sockets.append(sock)
            body = read_body(response, limit, fail, deadline)
            return BoundedResponse(response.status_code, response.headers, body)
    except httpx.HTTPError as exc:
        if expired.is_set() or time.monotonic() >= deadline:
            raise fail(f"no complete answer within {timeout:g} s") from None
        raise fail(f"request failed: {type(exc).__name__}: {clean(redact_text(str(exc)))}") from None
    finally:
        WATCHDOG.unwatch(key)


# -- the asyncio path: the event loop cancels at the deadline --------------------------------------


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

    url, headers = userinfo_as_header(url, headers)
    try:
        async with asyncio.timeout(timeout):
            async with client.stream(
                method, url, headers=_headers(headers), content=content, timeout=_timeout(client.timeout, timeout)
            ) as response:
                body = await aread_body(response, limit, fail)
                return BoundedResponse(response.status_code, response.headers, body)
    except TimeoutError:
        raise fail(f"no complete answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise fail(f"request failed: {type(exc).__name__}: {clean(redact_text(str(exc)))}") from None
