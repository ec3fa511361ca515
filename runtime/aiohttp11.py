"""A lean asyncio HTTP/1.1 client for OPA's data API: keep-alive connections pooled per event loop, bounded reads.

``OPAEngine.aevaluate`` used httpx's AsyncClient, whose per-request work
(httpx, httpcore, h11, anyio: about 2,800 Python calls) made the async engine
a third as fast as the synchronous one. OPA's API needs little of HTTP: a POST
with a JSON body, an answer with a Content-Length or chunked body. This client
does that on asyncio streams, and keeps what matters for a policy decision:

- connections kept alive and pooled per event loop (a stream belongs to the
  loop that opened it), at most ``max_idle`` idle ones per loop;
- a request on a kept-alive connection the server has closed meanwhile is
  sent again once on a new connection (nothing was answered on the old one);
- TLS through an ``ssl.SSLContext``;
- the head bounded (64 KiB), the body bounded (``max_bytes``, declared or
  streamed, chunked included), a redirect never followed and its body never read;
- no deadline of its own: the caller wraps a request in one ``asyncio.timeout``.

Anything off-protocol raises :class:`HTTPProtocolError`; transport failures
raise ``OSError`` (``ConnectionError``) or ``asyncio.IncompleteReadError``.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import Mapping

__all__ = ["AsyncPool", "HTTPProtocolError"]

_HEAD_LIMIT = 64 * 1024
_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HTTPProtocolError(Exception):
    """An answer this client will not read: malformed, too large, a redirect, an encoding it did not ask for."""


class AsyncPool:
    """Keep-alive HTTP/1.1 connections to one server, pooled per event loop."""

    def __init__(self, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None, max_idle: int = 32) -> None:
        """``host``/``port`` of the server; ``ssl_context`` for https."""
        self.host, self.port, self.max_idle = host, port, max_idle
        self._ssl = ssl_context
        self._authority = f"[{host}]" if ":" in host else host
        if port not in (80, 443):
            self._authority += f":{port}"
        self._idle: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[_Connection]] = weakref.WeakKeyDictionary()
        self._closed = False

    async def request(self, method: str, target: str, headers: Mapping[str, str], body: bytes, *,
                      max_bytes: int) -> tuple[int, bytes]:
        """Send one request; the status and the whole body (at most ``max_bytes``)."""
        head = [f"{method} {target} HTTP/1.1", f"Host: {self._authority}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        message = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        for attempt in (0, 1):
            connection, reused = await self._acquire()
            try:
                connection[1].write(message)
                await connection[1].drain()
                status, keep_alive, content = await _read_response(connection[0], max_bytes)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                _close(connection)
                # A kept-alive connection the server closed while it was idle: nothing was answered, send again.
                if reused and attempt == 0 and (not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial):
                    continue
                raise
            except BaseException:
                _close(connection)
                raise
            if keep_alive:
                self._release(connection)
            else:
                _close(connection)
            return status, content
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def _acquire(self) -> tuple[_Connection, bool]:
        if self._closed:
            raise ConnectionError("the connection pool is closed")
        idle = self._idle.get(asyncio.get_running_loop())
        while idle:
            connection = idle.pop()
            if not connection[1].is_closing() and not connection[0].at_eof():
                return connection, True
            _close(connection)
        reader, writer = await asyncio.open_connection(
            self.host, self.port, ssl=self._ssl, server_hostname=self.host if self._ssl else None, limit=_HEAD_LIMIT
        )
        return (reader, writer), False

    def _release(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(asyncio.get_running_loop(), [])
        if self._closed or len(idle) >= self.max_idle:
            _close(connection)
        else:
            idle.append(connection)

    def close(self) -> None:
        """Close every idle connection of every loop; later requests fail."""
        self._closed = True
        for connections in list(self._idle.values()):
            while connections:
                _close(connections.pop())


def _close(connection: _Connection) -> None:
    try:
        connection[1].close()
    except RuntimeError:  # its event loop is closed already
        pass


async def _read_response(reader: asyncio.StreamReader, max_bytes: int) -> tuple[int, bool, bytes]:
    """(status, keep-alive, body) of one answer."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise HTTPProtocolError(f"answer head larger than {_HEAD_LIMIT} bytes") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HTTPProtocolError("not an HTTP/1.x answer")
    status = int(parts[1])
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
    if 300 <= status < 400:
        raise HTTPProtocolError(f"HTTP {status}: redirects are not followed")
    if fields.get("content-encoding", "identity").lower() != "identity":
        raise HTTPProtocolError(f"unexpected content-encoding {fields['content-encoding'][:40]!r}")
    keep_alive = parts[0] != "HTTP/1.0" and "close" not in fields.get("connection", "").lower()
    if "chunked" in fields.get("transfer-encoding", "").lower():
        return status, keep_alive, await _read_chunked(reader, max_bytes)
    length = fields.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise HTTPProtocolError("malformed content-length")
        if int(length) > max_bytes:
            raise HTTPProtocolError(f"answer larger than {max_bytes} bytes")
        return status, keep_alive, await reader.readexactly(int(length))
    # Neither: the body runs to the end of the connection.
    content = await reader.read(max_bytes + 1)
    while len(content) <= max_bytes and (more := await reader.read(max_bytes + 1 - len(content))):
        content += more
    if len(content) > max_bytes:
        raise HTTPProtocolError(f"answer larger than {max_bytes} bytes")
    return status, False, content


async def _read_chunked(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        line = (await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip()
        try:
            length = int(line, 16)
        except ValueError:
            raise HTTPProtocolError("malformed chunk size") from None
        if length == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, until the empty line
                pass
            return b"".join(chunks)
        size += length
        if size > max_bytes:
            raise HTTPProtocolError(f"answer larger than {max_bytes} bytes")
        chunks.append(await reader.readexactly(length))
        if await reader.readexactly(2) != b"\r\n":
            raise HTTPProtocolError("malformed chunk")
