"""OPAEngine: decisions from a real OPA over its REST data API (``POST /v1/data/<path>``).

No opa-python-client on this path (it serves the management plane:
:mod:`.opa_admin`): the data API is one POST. No httpx either: ``make bench`` measured its
per-request work at about 470 us of CPU against 160 us for ``http.client`` (the
engine was 1.6-2.4x the raw REST anchor), and its asyncio stack at about 1.7 ms
(the asyncio engine ran at a third of the synchronous one). The synchronous path,
the one agent loops call most, uses the standard library's ``http.client`` with
one keep-alive connection per thread; the asyncio path uses :mod:`.asynchttp`,
a lean HTTP/1.1 client on an :class:`asyncio.Protocol` with a keep-alive pool per
event loop. Both raise the standard library's errors, mapped here alike.

Revision: every query asks for ``?provenance=true``, whose ``bundles`` field
names each activated bundle with its manifest revision (OPA's documented way;
``/v1/status`` needs the status plugin). :attr:`OPAEngine.revision` is the one
seen on the latest answer, so it never costs a request. Because OPA may activate
a new bundle between queries, a cached decision from OPA is reused for at most
``decision_ttl`` seconds (:data:`DEFAULT_DECISION_TTL`), far less than OPA's own
default bundle polling interval. An OPA serving policies that are not in bundles
reports no revision, and its decisions are not cached.

Failures map onto the runtime's tree; the enforcer denies on all of them:

- :class:`EngineUnavailable`: refused, unreachable, timed out, HTTP 5xx without an OPA error body;
- :class:`EngineResponseError`: an OPA error body (``{"code", "message"}``), non-JSON,
  no ``result`` (the decision is undefined: wrong path or no such bundle), a result that is not an object.

Only connection failures are retried (``retries`` times, at once): the query is
a read, and a refused connection or a pooled connection the server closed says
nothing about the next attempt. A timeout is never retried.

Bounded reads (:mod:`sekuire.compiler.httpio`): ``timeout`` is the deadline of
the whole call, retries included, however OPA paces its bytes (asyncio cancels
at the deadline and closes the connection; the synchronous path's socket is shut
down by the shared watchdog thread, and each read is bounded too); an answer is at most
:data:`MAX_ANSWER_BYTES` (a longer one is refused as soon as it passes the
limit, or at once by its Content-Length); a redirect is an error whose body is
not read. The URL in every message and log has its userinfo removed.
"""

from __future__ import annotations

import asyncio
import contextvars
import http.client
import json
import logging
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..compiler.httpio import WATCHDOG, shutdown_socket
from ..compiler.textsafe import clean, redact_text, redact_url
from .asynchttp import ConnectionPool, close_on_loop
from .engine import Engine
from .errors import EngineResponseError, EngineUnavailable
from .oparequest import OPARequests, ssl_context

__all__ = [
    "DEFAULT_DECISION_TTL",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "KEEPALIVE_EXPIRY",
    "MAX_ANSWER_BYTES",
    "MAX_CONNECTIONS",
    "MAX_KEEPALIVE_CONNECTIONS",
    "OPAEngine",
]

logger = logging.getLogger(__name__)

#: Seconds for each of connect, write, read and pool wait: an OPA sidecar answers in milliseconds.
DEFAULT_TIMEOUT = 2.0
DEFAULT_RETRIES = 1
# OPA's decision_id of the latest answer, per thread and per asyncio task (set where the answer is read).
_DECISION_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("sekuire_opa_decision_id", default=None)

#: Seconds a decision from OPA may be reused (OPA polls bundles every 60 s or more by default).
DEFAULT_DECISION_TTL = 5.0
MAX_CONNECTIONS = 32
MAX_KEEPALIVE_CONNECTIONS = 16
#: Seconds an idle pooled connection is kept.
KEEPALIVE_EXPIRY = 30.0
#: Larger answers from OPA are refused (a decision is a few kB; a manifest check of hundreds of tools some 100 kB).
MAX_ANSWER_BYTES = 8 << 20
_READ_STEP = 64 * 1024

# Retried: refused, reset, or a kept-alive connection the server closed (http.client's errors; asynchttp raises
# the same ones).
_RETRYABLE = (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine)
_FAILURES = (OSError, http.client.HTTPException)
_MAX_MESSAGE = 300
_JSON = {"Content-Type": "application/json"}


class OPAEngine(Engine):
    """An OPA server at ``url`` (``http://127.0.0.1:8181``); thread-safe and usable from any event loop."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        headers: Mapping[str, str] | None = None,
        verify: bool | ssl.SSLContext = True,
        decision_ttl: float | None = DEFAULT_DECISION_TTL,
    ) -> None:
        """``headers`` go with every request (``Authorization: Bearer ...`` for OPA's token authn; never logged).

        ``verify``: True (the system's CAs), False (no verification), or an ``ssl.SSLContext`` for a private CA.
        A header that could split a request (CR, LF) is a ValueError here.
        """
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.url = url.rstrip("/")
        #: The URL as messages and logs show it: no userinfo.
        self.shown_url = redact_url(self.url)
        self.timeout = timeout
        self.retries = retries
        self.decision_ttl = decision_ttl
        headers = {**(headers or {}), **_JSON}
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"OPA url must be http(s)://host[:port][/prefix], not {redact_url(url)!r}")
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        if parts.username is not None and "Authorization" not in headers:
            # A URL's userinfo is sent as basic auth, as httpx and browsers do.
            import base64
            from urllib.parse import unquote

            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        self._ssl = ssl_context(verify) if parts.scheme == "https" else None
        self._default_port = 443 if parts.scheme == "https" else 80
        self._requests = OPARequests(self._host, self._port, self._default_port, parts.path.rstrip("/"), headers)
        self._headers = self._requests.headers
        # One keep-alive connection per thread (http.client connections are not thread-safe).
        self._local = threading.local()
        self._connections: weakref.WeakSet[http.client.HTTPConnection] = weakref.WeakSet()
        # An asyncio connection belongs to the event loop that opened it: one pool per loop.
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ConnectionPool] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._bundles: dict[str, str] = {}
        self._revision = ""
        self._version = ""
        self._closed = False

    def __repr__(self) -> str:
        return f"OPAEngine({self.shown_url!r})"

    @property
    def revision(self) -> str:
        """``name=revision`` of every bundle OPA reported on its latest answer, ``;``-joined; "" before one."""
        return self._revision

    @property
    def bundles(self) -> dict[str, str]:
        """``{bundle name: revision}`` OPA reported with its last answer (provenance)."""
        with self._lock:
            return dict(self._bundles)

    def evaluate(self, path: str, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002 - OPA's name
        """``POST /v1/data/<path>`` to OPA; the result, or EngineError (fail closed) on anything else."""
        target, body = self._requests.target(path), self._requests.body(input)
        _DECISION_ID.set(None)
        deadline = time.monotonic() + self.timeout
        for attempt in range(self.retries + 1):
            connection = self._connection()
            expired = threading.Event()

            def on_deadline(connection: http.client.HTTPConnection = connection, expired: threading.Event = expired) -> None:
                expired.set()
                shutdown_socket(connection.sock)

            # One deadline for the whole call: the watchdog shuts the socket down when it passes.
            WATCHDOG.watch(connection, deadline, on_deadline)
            try:
                connection.request("POST", target, body=body, headers=self._headers)
                response = connection.getresponse()
                status, data = response.status, self._read(response, deadline)
            except _FAILURES as exc:
                self._drop_connection()
                if expired.is_set() or time.monotonic() >= deadline:
                    raise EngineUnavailable(f"{self.shown_url}: no answer within {self.timeout} s") from None
                if isinstance(exc, _RETRYABLE) and attempt < self.retries:
                    logger.debug("retrying %s after %s", self.shown_url, type(exc).__name__)
                    continue
                raise self._unavailable(exc) from exc
            finally:
                WATCHDOG.unwatch(connection)
            if response.will_close:
                self._drop_connection()
            return self._result(path, status, data)
        raise AssertionError("unreachable: the last attempt raises")

    def _read(self, response: http.client.HTTPResponse, deadline: float) -> bytes:
        """The body of an answer, bounded in size; a redirect's body is never read."""
        if 300 <= response.status < 400:
            self._drop_connection()  # the unread body would poison a kept-alive connection
            raise EngineResponseError(f"{self.shown_url}: HTTP {response.status}: redirects are not followed")
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > MAX_ANSWER_BYTES:
            self._drop_connection()
            raise EngineResponseError(f"{self.shown_url}: answer larger than {MAX_ANSWER_BYTES} bytes")
        parts: list[bytes] = []
        size = 0
        while True:
            chunk = response.read1(_READ_STEP)
            if not chunk:
                if response.length:  # http.client's count of bytes still owed by Content-Length
                    raise http.client.IncompleteRead(b"", response.length)
                response.close()  # read in full: the kept-alive connection takes the next request
                return b"".join(parts)
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                self._drop_connection()
                raise EngineResponseError(f"{self.shown_url}: answer larger than {MAX_ANSWER_BYTES} bytes")
            if time.monotonic() > deadline:
                raise socket.timeout("deadline passed")
            parts.append(chunk)

    async def aevaluate(self, path: str, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
        """Async twin of :meth:`evaluate`, on this event loop's keep-alive pool (:mod:`.asynchttp`)."""
        head, body = self._requests.head(path), self._requests.body(input)
        _DECISION_ID.set(None)
        request = b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)
        try:
            async with asyncio.timeout(self.timeout):
                for attempt in range(self.retries + 1):
                    try:
                        answer = await self._pool().request(request)
                    except _FAILURES as exc:
                        if isinstance(exc, _RETRYABLE) and attempt < self.retries:
                            logger.debug("retrying %s after %s", self.shown_url, type(exc).__name__)
                            continue
                        raise self._unavailable(exc) from exc
                    return self._result(path, answer.status, answer.body)
        except TimeoutError:
            raise EngineUnavailable(f"{self.shown_url}: no answer within {self.timeout} s (TimeoutError)") from None
        raise AssertionError("unreachable: the last attempt raises")

    def _connection(self) -> http.client.HTTPConnection:
        if self._closed:
            raise EngineUnavailable(f"{self.shown_url}: the engine is closed")
        connection = getattr(self._local, "connection", None)
        if connection is None:
            if self._ssl is not None:
                connection = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=self._ssl)
            else:
                connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            self._local.connection = connection
            with self._lock:
                self._connections.add(connection)
        return connection

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            self._local.connection = None
            connection.close()

    def _pool(self) -> ConnectionPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None or self._closed:
            with self._lock:
                if self._closed:
                    raise EngineUnavailable(f"{self.shown_url}: the engine is closed")
                pool = self._pools.get(loop)
                if pool is None:
                    pool = self._pools[loop] = ConnectionPool(
                        self._host,
                        self._port or self._default_port,
                        ssl_context=self._ssl,
                        limit=MAX_ANSWER_BYTES,
                        fail=lambda message: EngineResponseError(f"{self.shown_url}: {message}"),
                        max_connections=MAX_CONNECTIONS,
                        max_idle=MAX_KEEPALIVE_CONNECTIONS,
                        keepalive_expiry=KEEPALIVE_EXPIRY,
                    )
        return pool

    def _unavailable(self, exc: Exception) -> EngineUnavailable:
        if isinstance(exc, socket.timeout):
            return EngineUnavailable(f"{self.shown_url}: no answer within {self.timeout} s ({type(exc).__name__})")
        # The same name for a refused connection whichever transport saw it.
        name = "ConnectError" if isinstance(exc, ConnectionRefusedError) else type(exc).__name__
        detail = clean(redact_text(str(exc)), _MAX_MESSAGE) or "connection failed"
        return EngineUnavailable(f"{self.shown_url}: {name}: {detail}")

    def _result(self, path: str, status: int, content: bytes) -> dict[str, Any]:
        where = f"{self.shown_url}/v1/data/{clean(path.strip('/'))}"
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        if status >= 500 and not _is_opa_error(body):
            raise EngineUnavailable(f"{where}: HTTP {status}")
        if _is_opa_error(body):
            raise EngineResponseError(f"{where}: HTTP {status}: {_opa_error_message(body or {})}")
        if not 200 <= status < 300:
            raise EngineResponseError(f"{where}: HTTP {status}")
        if not isinstance(body, dict):
            raise EngineResponseError(f"{where}: the response is not a JSON object")
        self._observe(body.get("provenance"))
        decision_id = body.get("decision_id")
        _DECISION_ID.set(decision_id if isinstance(decision_id, str) and len(decision_id) <= 128 else None)
        if "result" not in body:
            raise EngineResponseError(f"{where}: undefined (no policy at this path; is the bundle activated?)")
        result = body["result"]
        if not isinstance(result, dict):
            raise EngineResponseError(f"{where}: expected an object, got {type(result).__name__}")
        return result

    def health(self, *, bundles: bool = False) -> bool:
        """Whether OPA is healthy (``bundles``: every bundle activated); opa-python-client, the extra ``[opa]``."""
        from .opa_admin import health

        return health(self.url, bundles=bundles, timeout=self.timeout, headers=self._headers)

    def wait_until_ready(self, *, bundles: bool = True, timeout: float = 30.0) -> None:
        """Block until :meth:`health` holds; EngineUnavailable after ``timeout`` seconds."""
        from .opa_admin import wait_until_ready

        wait_until_ready(self.url, bundles=bundles, timeout=timeout, headers=self._headers)

    def decision_id(self) -> str | None:
        """OPA's ``decision_id`` for the latest query of this thread or task (OPA gives one when it logs decisions)."""
        return _DECISION_ID.get()

    @property
    def version(self) -> str:
        """OPA's version, as its provenance reports it ("" before the first answer)."""
        return self._version

    def _observe(self, provenance: Any) -> None:
        if isinstance(provenance, dict) and isinstance(provenance.get("version"), str):
            self._version = clean(provenance["version"], 64)
        bundles = provenance.get("bundles") if isinstance(provenance, dict) else None
        seen = {
            name: info["revision"]
            for name, info in (bundles or {}).items()
            if isinstance(info, dict) and isinstance(info.get("revision"), str)
        }
        with self._lock:
            if seen != self._bundles:
                if self._bundles:
                    logger.info("OPA at %s now serves bundle revisions %s", self.shown_url, clean(str(seen)))
                self._bundles = seen
                self._revision = ";".join(f"{name}={revision}" for name, revision in sorted(seen.items()))

    def close(self) -> None:
        """Close the kept-alive connections of every thread and event loop; later queries raise EngineUnavailable."""
        with self._lock:
            self._closed = True
            pools = list(self._pools.items())
            self._pools.clear()
            connections = list(self._connections)
        for connection in connections:
            connection.close()
        for loop, pool in pools:
            close_on_loop(loop, pool)

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        self.close()


def _is_opa_error(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("code"), str) and isinstance(body.get("message"), str)


def _opa_error_message(body: dict[str, Any]) -> str:
    message = f"{body['code']}: {body['message']}"
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict) and isinstance(errors[0].get("message"), str):
        # "error(s) occurred while evaluating query" says little; the first error says what.
        message += f": {errors[0]['message']}"
    return clean(" ".join(message.split()), _MAX_MESSAGE)
