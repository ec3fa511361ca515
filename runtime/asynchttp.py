"""A lean asyncio HTTP/1.1 client for OPA's data API: keep-alive connections per event loop, bounded answers.

Why not httpx: ``make bench`` measured httpx, httpcore, h11 and anyio at about
1.7 ms of CPU and 2,770 Python calls per request to OPA, which put the asyncio
engine at a third of the synchronous one. This module does only what
:class:`~sekuire.runtime.OPAEngine` needs, on an :class:`asyncio.Protocol`
(no streams, no task per connection): one POST with a prepared head, one
answer parsed as its bytes arrive, the connection kept for the next request.

- **Pool.** A :class:`ConnectionPool` belongs to one event loop (its transports
  cannot be used from another). At most ``max_connections`` requests run at
  once (more wait, within the caller's deadline); idle connections are reused
  newest first, dropped after ``keepalive_expiry`` seconds, and never more
  than ``max_idle`` are kept. A connection the server closed while idle is
  noticed by the event loop and never reused; one that turns out closed as a
  request is sent (the server's idle timer raced it) is replaced by a new
  connection once, at once.
- **Answers** are parsed as their bytes arrive by :mod:`.httpparse`, bounded like
  :mod:`sekuire.compiler.httpio` (head, body, redirects, encodings). The caller
  bounds the whole call with ``asyncio.timeout``; a request cancelled or failed
  mid-way closes its connection, so a late answer never reaches the next request.
- **TLS** through the ``ssl.SSLContext`` given (hostname checked against the URL's host).

Errors are the standard library's, as :mod:`http.client` raises them, so the
synchronous and asyncio paths of the engine map failures alike: ``OSError``
(refused, reset, TLS), :class:`http.client.RemoteDisconnected` (closed before
an answer), :class:`http.client.IncompleteRead`, and other
:class:`http.client.HTTPException` for malformed answers; an answer that is too
large, a redirect or an encoded body is ``fail(message)``, the caller's error.
"""

from __future__ import annotations

import asyncio
import http.client
import re
import ssl
import time
from collections.abc import Mapping

from .httpparse import Answer, Fail, Response

__all__ = ["Answer", "ConnectionPool", "close_on_loop", "encode_head"]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def encode_head(method: str, target: str, host: str, port: int | None, default_port: int,
                headers: Mapping[str, str]) -> bytes:
    """The request line and headers up to (not including) ``Content-Length``; ValueError for a header that
    could split the request (CR, LF or another control character) or a name that is not an HTTP token."""
    authority = f"[{host}]" if ":" in host else host
    if port is not None and port != default_port:
        authority = f"{authority}:{port}"
    lines = [f"{method} {target} HTTP/1.1", f"Host: {authority}"]
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name.encode("latin-1", "replace")) or name.lower() in ("host", "content-length"):
            raise ValueError(f"invalid header name {name[:40]!r}")
        if _BAD_VALUE.search(value):
            raise ValueError(f"invalid value for header {name!r}: a control character")
        lines.append(f"{name}: {value}")
    if any(ord(ch) > 0xFF for ch in target) or _BAD_VALUE.search(target) or " " in target:
        raise ValueError("invalid request target")
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._response: Response | None = None
        self._waiter: asyncio.Future[Answer] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        response = self._response
        if response is None:
            self.close()  # bytes nobody asked for (a 408 before a close, say): never reuse this connection
            return
        try:
            complete = response.feed(data)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request
            self._settle(exc)
            return
        if complete:
            self._settle(None)

    def eof_received(self) -> bool:
        self._closed_by_peer()
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed_by_peer(exc)

    # -- requests --------------------------------------------------------------------------------

    async def exchange(self, request: bytes, limit: int, fail: Fail) -> tuple[Answer, bool]:
        """Send ``request``, wait for its answer; the answer and whether the connection can be reused."""
        assert self.transport is not None and self._response is None
        if self.closed or self.transport.is_closing():
            raise http.client.RemoteDisconnected("the connection was closed before the request")
        loop = asyncio.get_running_loop()
        response = self._response = Response(limit, fail)
        waiter = self._waiter = loop.create_future()
        try:
            self.transport.write(request)
            answer = await waiter
        finally:
            self._response = self._waiter = None
        return answer, response.keep_alive and not self.closed

    def _settle(self, exc: BaseException | None) -> None:
        waiter, response = self._waiter, self._response
        if waiter is None or response is None or waiter.done():
            return
        if exc is not None:
            self.close()  # the rest of a bad answer must never reach the next request
            waiter.set_exception(exc)
        else:
            waiter.set_result(Answer(response.status, bytes(response.body)))

    def _closed_by_peer(self, exc: Exception | None = None) -> None:
        self.closed = True
        response = self._response
        if response is None:
            return
        try:
            complete = response.eof()
        except Exception as error:  # noqa: BLE001 - handed to the waiting request
            if exc is not None:
                error.__cause__ = exc
            self._settle(error)
            return
        if complete:
            response.keep_alive = False
            self._settle(None)

    def close(self) -> None:
        """Close at once (unsent data dropped): for a connection in an unknown state."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections to one origin, for the event loop that creates it."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        limit: int,
        fail: Fail,
        max_connections: int,
        max_idle: int,
        keepalive_expiry: float,
    ) -> None:
        self.host, self.port = host, port
        self._ssl = ssl_context
        self._limit, self._fail = limit, fail
        self._slots = asyncio.Semaphore(max_connections)
        self._max_idle = max_idle
        self._expiry = keepalive_expiry
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._closed = False

    async def request(self, request: bytes) -> Answer:
        """Send a complete request (head and body) and return its answer."""
        async with self._slots:
            connection, reused = self._idle_connection(), True
            if connection is None:
                connection, reused = await self._connect(), False
            try:
                answer, reusable = await self._exchange(connection, request)
            except http.client.RemoteDisconnected:
                if not reused:
                    raise
                # The server closed the kept-alive connection as the request left: a new one, once.
                connection = await self._connect()
                answer, reusable = await self._exchange(connection, request)
            self._release(connection, reusable)
            return answer

    async def _exchange(self, connection: _Connection, request: bytes) -> tuple[Answer, bool]:
        self._busy.add(connection)
        try:
            return await connection.exchange(request, self._limit, self._fail)
        except BaseException:
            self._busy.discard(connection)
            connection.close()  # cancelled or failed mid-answer: its state is unknown
            raise

    def _idle_connection(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()  # the newest: the least likely to have timed out at the server
            if not connection.closed and now - connection.idle_since < self._expiry:
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        if self._closed:
            raise ConnectionAbortedError("the connection pool is closed")
        loop = asyncio.get_running_loop()
        hostname = self.host if self._ssl is not None else None
        _, connection = await loop.create_connection(
            _Connection, self.host, self.port, ssl=self._ssl, server_hostname=hostname
        )
        return connection

    def _release(self, connection: _Connection, reusable: bool) -> None:
        self._busy.discard(connection)
        if reusable and not self._closed and len(self._idle) < self._max_idle:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        """Close every connection, idle or busy (call it on the pool's own event loop)."""
        self._closed = True
        for connection in [*self._idle, *self._busy]:
            connection.close()
        self._idle.clear()
        self._busy.clear()


def close_on_loop(loop: asyncio.AbstractEventLoop, pool: ConnectionPool) -> None:
    """Close ``pool`` on its own ``loop``: at once from that loop, or one not running; else scheduled on it.

    A loop that has ended closed nothing: its connections close with their sockets.
    """
    if loop.is_closed():
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop or not loop.is_running():
        pool.close()
        return
    try:
        loop.call_soon_threadsafe(pool.close)
    except RuntimeError:  # the loop closed meanwhile
        pass
