"""The LLM seam of an agent: anything with ``complete(model, messages, **kw)`` returning an OpenAI chat-completions dict.

:class:`OpenAIChatClient` speaks that API over httpx (``POST {base_url}/chat/completions``)
to OpenAI or any compatible server (vLLM, Ollama, LiteLLM, ...). Failures become
:class:`LLMError` with one line naming the URL (without any ``user:pass@``); the
API key is sent only in the Authorization header and never appears in logs,
errors or ``repr``.

Answers are read bounded: at most ``max_response_bytes`` decoded bytes (a
gzip/deflate body is inflated step by step and abandoned as soon as it passes
the limit), one ``deadline`` for the whole call (connect, send, headers, body),
and a redirect is an error whose body is never read. The synchronous path
shuts the call's socket down at the deadline, whatever phase it is in (each
call has its own connection for that); the asyncio path cancels the call at
the deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..compiler.httpio import userinfo_as_header
from .errors import SekuireRuntimeError

__all__ = [
    "AsyncChatModel",
    "ChatModel",
    "DEFAULT_LLM_DEADLINE",
    "DEFAULT_LLM_TIMEOUT",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "LLMError",
    "OpenAIChatClient",
    "redact_url",
]

logger = logging.getLogger(__name__)

#: Per phase: generations can take a while; connecting should not.
DEFAULT_LLM_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
#: The whole call, however the server paces its bytes.
DEFAULT_LLM_DEADLINE = 300.0
#: Decoded bytes of one answer (a chat completion is rarely above a few hundred KiB).
DEFAULT_MAX_RESPONSE_BYTES = 32 << 20
_STEP = 64 * 1024

Messages = Sequence[Mapping[str, Any]]


class LLMError(SekuireRuntimeError):
    """The model server could not be reached or answered badly."""

    code = "llm"


@runtime_checkable
class ChatModel(Protocol):
    def complete(self, model: str, messages: Messages, **kwargs: Any) -> dict[str, Any]:
        """One chat completion, as an OpenAI chat-completions response object."""
        ...


@runtime_checkable
class AsyncChatModel(Protocol):
    async def acomplete(self, model: str, messages: Messages, **kwargs: Any) -> dict[str, Any]:
        """The asyncio twin of :meth:`ChatModel.complete`."""
        ...


def redact_url(url: str) -> str:
    """``url`` without ``user:password@`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(invalid URL)"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


class _Body:
    """Decode a Content-Encoding incrementally, never holding more than ``limit`` decoded bytes."""

    def __init__(self, encoding: str, limit: int, url: str) -> None:
        self.limit, self.size, self.url = limit, 0, url
        self.parts: list[bytes] = []
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            self._zlib: Any = None
        elif encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj()
        else:
            raise LLMError(f"unsupported Content-Encoding {encoding[:40]!r}", source=url)

    def _add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise LLMError(f"response larger than {self.limit} bytes", source=self.url)
        self.parts.append(data)

    def feed(self, raw: bytes) -> None:
        if self._zlib is None:
            self._add(raw)
            return
        try:
            while raw:
                self._add(self._zlib.decompress(raw, min(_STEP, self.limit - self.size + 1)))
                raw = self._zlib.unconsumed_tail
        except zlib.error as exc:
            raise LLMError(f"response body does not decode: {exc}", source=self.url) from None

    def result(self) -> bytes:
        return b"".join(self.parts)


def _clamp(base: httpx.Timeout, remaining: float) -> httpx.Timeout:
    def clamp(value: float | None) -> float:
        return max(0.001, remaining if value is None else min(value, remaining))

    return httpx.Timeout(connect=clamp(base.connect), read=clamp(base.read), write=clamp(base.write), pool=clamp(base.pool))


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Watch:
    """One synchronous call's deadline: at it, the call's socket is shut down, whatever phase it is in.

    Armed before the request is sent; httpcore's ``trace`` extension hands it the
    socket as soon as the connection is made (a shutdown wakes a blocked read,
    where a per-read timeout would let a server pace its bytes forever).
    """

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.expired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            self.expired, sock = True, self._sock
        if sock is not None:
            _shutdown(sock)

    def trace(self, name: str, info: Mapping[str, Any]) -> None:
        if name != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        try:
            sock = stream.get_extra_info("socket") if stream is not None else None
        except Exception:  # noqa: BLE001 - a transport without sockets
            sock = None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._sock, expired = sock, self.expired
        if expired:
            _shutdown(sock)

    def cancel(self) -> None:
        self._timer.cancel()


class OpenAIChatClient:
    """An OpenAI-compatible chat-completions client; ``base_url`` ends before ``/chat/completions``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_LLM_TIMEOUT,
        *,
        deadline: float = DEFAULT_LLM_DEADLINE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        #: Where requests go; an agent checks its host and scheme against the policy before each call.
        self.base_url = base_url.rstrip("/")
        self._shown = redact_url(self.base_url + "/chat/completions")
        self._headers = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        # Credentials in the URL travel as a header: httpx's request log line would print them.
        self.url, self._headers = userinfo_as_header(self.base_url + "/chat/completions", self._headers)
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.deadline = deadline
        self.max_response_bytes = max_response_bytes
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"OpenAIChatClient({self._shown!r}, api_key={'set' if 'Authorization' in self._headers else None})"

    def _body(self, model: str, messages: Messages, kwargs: Mapping[str, Any]) -> bytes:
        # None means "not set": OpenAI rejects explicit nulls for several parameters.
        body = {"model": model, "messages": list(messages), **{k: v for k, v in kwargs.items() if v is not None}}
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def _fail(self, exc: Exception) -> LLMError:
        if isinstance(exc, LLMError):
            return exc
        text = redact_url(str(exc)) if "@" in str(exc) else str(exc)
        return LLMError(f"request failed: {exc.__class__.__name__}: {text}", source=self._shown)

    def _head(self, response: httpx.Response) -> _Body:
        status = response.status_code
        if 300 <= status < 400:
            raise LLMError(f"HTTP {status}: redirects are not followed", source=self._shown)
        length = response.headers.get("Content-Length")
        encoding = response.headers.get("Content-Encoding", "")
        if length is not None and encoding.strip().lower() in ("", "identity"):
            if not length.strip().isdigit():
                raise LLMError("invalid Content-Length", source=self._shown)
            if int(length) > self.max_response_bytes:
                raise LLMError(f"response larger than {self.max_response_bytes} bytes", source=self._shown)
        return _Body(encoding, self.max_response_bytes, self._shown)

    def _deadline_passed(self) -> LLMError:
        return LLMError(f"no complete answer within the {self.deadline:g} s deadline", source=self._shown)

    def complete(self, model: str, messages: Messages, **kwargs: Any) -> dict[str, Any]:
        """POST a chat completion and return the decoded answer (bounded body, one deadline, no redirects)."""
        if self._client is None:
            # No kept-alive connections: every call connects, so its watch learns its socket before sending.
            self._client = httpx.Client(
                headers=self._headers, follow_redirects=False, limits=httpx.Limits(max_keepalive_connections=0)
            )
        content = self._body(model, messages, kwargs)
        end = time.monotonic() + self.deadline
        watch = _Watch(self.deadline)
        try:
            request = self._client.build_request(
                "POST", self.url, content=content, headers={"Content-Type": "application/json"},
                timeout=_clamp(self._timeout, self.deadline), extensions={"trace": watch.trace},
            )
            response = self._client.send(request, stream=True, follow_redirects=False)
            try:
                body = self._head(response)
                for raw in response.iter_raw(_STEP):
                    body.feed(raw)
                    if time.monotonic() > end:
                        raise self._deadline_passed()
            finally:
                response.close()
        except httpx.HTTPError as exc:
            raise self._deadline_passed() if watch.expired or time.monotonic() > end else self._fail(exc) from None
        finally:
            watch.cancel()
        return self._parse(response.status_code, body.result())

    async def acomplete(self, model: str, messages: Messages, **kwargs: Any) -> dict[str, Any]:
        """Async twin of :meth:`complete`."""
        if self._aclient is None:
            self._aclient = httpx.AsyncClient(headers=self._headers, timeout=self._timeout, follow_redirects=False)
        content = self._body(model, messages, kwargs)
        try:
            status, data = await asyncio.wait_for(self._apost(self._aclient, content), self.deadline)
        except asyncio.TimeoutError:
            raise self._deadline_passed() from None
        except httpx.HTTPError as exc:
            raise self._fail(exc) from None
        return self._parse(status, data)

    async def _apost(self, client: httpx.AsyncClient, content: bytes) -> tuple[int, bytes]:
        request = client.build_request("POST", self.url, content=content, headers={"Content-Type": "application/json"})
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            body = self._head(response)
            async for raw in response.aiter_raw(_STEP):
                body.feed(raw)
        finally:
            await response.aclose()
        return response.status_code, body.result()

    def _parse(self, status: int, body: bytes) -> dict[str, Any]:
        if status >= 400:
            raise LLMError(f"HTTP {status}: {_error_message(body)}", source=self._shown)
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise LLMError("response is not JSON", source=self._shown) from None
        if not isinstance(document, dict) or not isinstance(document.get("choices"), list):
            raise LLMError("response has no 'choices' list: not a chat completion", source=self._shown, pointer="/choices")
        return document

    def close(self) -> None:
        """Close the kept-alive connections."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None
        self.close()


def _error_message(body: bytes) -> str:
    """The server's own error message (OpenAI: ``{"error": {"message"}}``), shortened to one printable line."""
    try:
        document = json.loads(body)
        message = document["error"]["message"] if isinstance(document.get("error"), dict) else document.get("error")
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        message = None
    text = message if isinstance(message, str) and message else body[:200].decode("utf-8", "replace") or "(empty body)"
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split())[:300]
