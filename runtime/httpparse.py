"""One HTTP/1.1 answer parsed incrementally from the bytes that arrive, within bounds (for :mod:`.asynchttp`).

Framing as RFC 9112 reads it: ``Content-Length``, chunked (extensions
ignored, trailers read and dropped) or until the connection closes; 1xx
interim answers are skipped; ``Connection`` decides whether the connection can
be reused. Bounds: the head (and the trailers) at most :data:`MAX_HEAD`
bytes, a chunk-size line at most 4 KiB, the body at most the caller's
``limit``: a declared length over it is refused before any body byte, a
streamed one as soon as it passes. A 3xx (not 304) and a ``Content-Encoding``
are ``fail(message)`` before the body is read. Malformed answers raise the
errors :mod:`http.client` would (:class:`http.client.BadStatusLine`,
:class:`http.client.LineTooLong`, :class:`http.client.IncompleteRead`,
:class:`http.client.RemoteDisconnected`, :class:`http.client.HTTPException`).
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Callable

__all__ = ["Answer", "Fail", "MAX_HEAD", "Response"]

#: Largest status line plus headers (and chunked trailers) accepted, in bytes.
MAX_HEAD = 64 * 1024
_MAX_CHUNK_LINE = 4096
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NO_BODY = frozenset({204, 304})

#: Builds the caller's error for an answer it refuses (too large, a redirect, an encoding).
Fail = Callable[[str], Exception]


class Answer:
    """A complete answer: ``status`` and the ``body`` bytes (at most the pool's limit)."""

    __slots__ = ("body", "status")

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body


class Response:
    """An HTTP/1.1 answer parsed incrementally from the bytes fed to it."""

    def __init__(self, limit: int, fail: Fail) -> None:
        self.limit, self.fail = limit, fail
        self.buffer = bytearray()
        self.status = 0
        self.keep_alive = True
        self.body = bytearray()
        self.state = "head"  # head, length, chunk-size, chunk-data, chunk-end, trailers, until-close, done
        self.remaining = 0  # body bytes still owed by Content-Length or by the current chunk
        self.received = False  # any byte of the answer arrived

    def feed(self, data: bytes) -> bool:
        """Take bytes; True once the answer is complete."""
        self.received = True
        self.buffer += data
        while True:
            state = self.state
            if state == "head":
                if not self._head():
                    return False
            elif state == "length":
                self._take_body(self.remaining)
                if self.remaining:
                    return False
                self.state = "done"
            elif state == "chunk-size":
                if not self._chunk_size():
                    return False
            elif state == "chunk-data":
                self._take_body(self.remaining)
                if self.remaining:
                    return False
                self.state = "chunk-end"
            elif state == "chunk-end":
                line = self._line(_MAX_CHUNK_LINE)
                if line is None:
                    return False
                if line:
                    raise http.client.HTTPException("malformed chunked body: no CRLF after a chunk")
                self.state = "chunk-size"
            elif state == "trailers":
                if not self._trailers():
                    return False
            elif state == "until-close":
                self._take_body(len(self.buffer))
                return False
            else:  # done: bytes after the answer (no request was pipelined) make the connection unusable
                if self.buffer:
                    self.keep_alive = False
                return True

    def eof(self) -> bool:
        """The server closed the connection: True if that completes the answer, else the error to raise."""
        if self.state == "until-close":
            self.state = "done"
            return True
        if self.state == "done":
            return True
        if not self.received:
            raise http.client.RemoteDisconnected("Remote end closed connection without response")
        if self.state == "length":
            raise http.client.IncompleteRead(bytes(self.body), self.remaining)
        raise http.client.IncompleteRead(bytes(self.body))

    def _line(self, limit: int) -> bytes | None:
        end = self.buffer.find(b"\n")
        if end < 0:
            if len(self.buffer) > limit:
                raise http.client.LineTooLong("chunk size line")
            return None
        line = bytes(self.buffer[:end]).rstrip(b"\r")
        del self.buffer[: end + 1]
        return line

    def _take_body(self, wanted: int) -> None:
        taken = min(wanted, len(self.buffer))
        if not taken:
            return
        if len(self.body) + taken > self.limit:
            raise self.fail(f"answer larger than {self.limit} bytes")
        self.body += self.buffer[:taken]
        del self.buffer[:taken]
        if self.state != "until-close":
            self.remaining -= taken

    def _block(self) -> list[bytes] | None:
        """The lines of a head or trailer block once it is complete (consumed from the buffer), else None."""
        buffer = self.buffer
        end, size = buffer.find(b"\r\n\r\n"), 4
        bare = buffer.find(b"\n\n")
        if bare >= 0 and (end < 0 or bare < end):
            end, size = bare, 2
        if end < 0:
            if len(buffer) > MAX_HEAD:
                raise http.client.LineTooLong("header block")
            return None
        if end > MAX_HEAD:
            raise http.client.LineTooLong("header block")
        block = bytes(buffer[:end])
        del buffer[: end + size]
        return [line.rstrip(b"\r") for line in block.split(b"\n")]

    def _head(self) -> bool:
        lines = self._block()
        if lines is None:
            return False
        status_line = lines[0]
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
            raise http.client.BadStatusLine(repr(status_line[:80]))
        status = int(parts[1])
        if 100 <= status < 200 and status != 101:
            return True  # an interim answer: the real one follows
        if status == 101 or status < 100:
            raise http.client.BadStatusLine(repr(status_line[:80]))
        self.status = status
        if 300 <= status < 400 and status != 304:
            raise self.fail(f"HTTP {status}: redirects are not followed")
        fields = _fields(lines[1:])
        tokens = {token.strip().lower() for token in fields.get(b"connection", b"").split(b",")}
        http10 = parts[0] == b"HTTP/1.0"
        self.keep_alive = b"keep-alive" in tokens if http10 else b"close" not in tokens
        encoding = fields.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"", b"identity"):
            raise self.fail(f"unsupported Content-Encoding {encoding[:40].decode('latin-1')!r}")
        coding = fields.get(b"transfer-encoding")
        length = fields.get(b"content-length")
        if status in _NO_BODY:
            self.state = "done"
        elif coding is not None:
            codings = [token.strip().lower() for token in coding.split(b",")]
            if codings[-1] != b"chunked" or any(token not in (b"chunked", b"identity") for token in codings):
                raise self.fail(f"unsupported Transfer-Encoding {coding[:40].decode('latin-1')!r}")
            if length is not None:
                self.keep_alive = False  # both framings: read as chunked, then never reuse (RFC 9112, 6.3)
            self.state = "chunk-size"
        elif length is not None:
            values = {value.strip() for value in length.split(b",")}
            value = values.pop() if len(values) == 1 else b""
            if not value.isdigit():
                raise http.client.HTTPException(f"invalid Content-Length {length[:40]!r}")
            self.remaining = int(value)
            if self.remaining > self.limit:
                raise self.fail(f"answer larger than {self.limit} bytes")
            self.state = "length"
        else:
            self.keep_alive = False
            self.state = "until-close"
        return True

    def _chunk_size(self) -> bool:
        line = self._line(_MAX_CHUNK_LINE)
        if line is None:
            return False
        digits = line.split(b";", 1)[0].strip()
        if not digits or len(digits) > 16 or digits.strip(b"0123456789abcdefABCDEF"):
            raise http.client.HTTPException(f"malformed chunk size {line[:40]!r}")
        size = int(digits, 16)
        if len(self.body) + size > self.limit:
            raise self.fail(f"answer larger than {self.limit} bytes")
        self.remaining = size
        self.state = "chunk-data" if size else "trailers"
        return True

    def _trailers(self) -> bool:
        if self.buffer[:2] == b"\r\n" or self.buffer[:1] == b"\n":  # no trailers: the common end
            del self.buffer[: 2 if self.buffer[:1] == b"\r" else 1]
            self.state = "done"
            return True
        if self._block() is None:
            return False
        self.state = "done"
        return True


def _fields(lines: list[bytes]) -> dict[bytes, bytes]:
    """Header fields by lower-cased name (repeated ones joined with commas); malformed lines are an error."""
    fields: dict[bytes, bytes] = {}
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise http.client.HTTPException(f"malformed header line {line[:60]!r}")
        key = name.lower()
        value = value.strip()
        fields[key] = fields[key] + b"," + value if key in fields else value
    return fields
