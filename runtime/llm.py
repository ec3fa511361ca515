"""The LLM seam of an agent: anything with ``complete(model, messages, **kw)`` returning an OpenAI chat-completions dict.

:class:`OpenAIChatClient` speaks that API over httpx (``POST {base_url}/chat/completions``)
to OpenAI or any compatible server (vLLM, Ollama, LiteLLM, ...). Failures become
:class:`LLMError` with one line naming the URL; the API key is sent only in the
Authorization header and never appears in logs, errors or ``repr``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import httpx

from .errors import SekuireRuntimeError

__all__ = ["AsyncChatModel", "ChatModel", "DEFAULT_LLM_TIMEOUT", "LLMError", "OpenAIChatClient"]

logger = logging.getLogger(__name__)

#: Generations can take a while; connecting should not.
DEFAULT_LLM_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
_MAX_RESPONSE_BYTES = 32 << 20

Messages = Sequence[Mapping[str, Any]]


class LLMError(SekuireRuntimeError):
    """The model server could not be reached or answered badly."""

    code = "llm"


@runtime_checkable
class ChatModel(Protocol):
    def complete(self, model: str, messages: Messages, **kwargs: Any) -> dict[str, Any]:
        """One chat completion, as an OpenAI chat-completions response object."""


@runtime_checkable
class AsyncChatModel(Protocol):
    async def acomplete(self, model: str, messages: Messages, **kwargs: Any) -> dict[str, Any]:
        """The asyncio twin of :meth:`ChatModel.complete`."""


class OpenAIChatClient:
    """An OpenAI-compatible chat-completions client; ``base_url`` ends before ``/chat/completions``."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float | httpx.Timeout = DEFAULT_LLM_TIMEOUT) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = timeout
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"OpenAIChatClient({self.url!r}, api_key={'set' if 'Authorization' in self._headers else None})"

    def _body(self, model: str, messages: Messages, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        # None means "not set": OpenAI rejects explicit nulls for several parameters.
        return {"model": model, "messages": list(messages), **{k: v for k, v in kwargs.items() if v is not None}}

    def complete(self, model: str, messages: Messages, **kwargs: Any) -> dict[str, Any]:
        if self._client is None:
            self._client = httpx.Client(timeout=self._timeout, headers=self._headers)
        try:
            response = self._client.post(self.url, json=self._body(model, messages, kwargs))
        except httpx.HTTPError as exc:
            raise LLMError(f"request failed: {exc.__class__.__name__}: {exc}", source=self.url) from None
        return self._parse(response)

    async def acomplete(self, model: str, messages: Messages, **kwargs: Any) -> dict[str, Any]:
        if self._aclient is None:
            self._aclient = httpx.AsyncClient(timeout=self._timeout, headers=self._headers)
        try:
            response = await self._aclient.post(self.url, json=self._body(model, messages, kwargs))
        except httpx.HTTPError as exc:
            raise LLMError(f"request failed: {exc.__class__.__name__}: {exc}", source=self.url) from None
        return self._parse(response)

    def _parse(self, response: httpx.Response) -> dict[str, Any]:
        body = response.content
        if response.status_code >= 400:
            raise LLMError(f"HTTP {response.status_code}: {_error_message(body)}", source=self.url)
        if len(body) > _MAX_RESPONSE_BYTES:
            raise LLMError(f"response larger than {_MAX_RESPONSE_BYTES} bytes", source=self.url)
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise LLMError("response is not JSON", source=self.url) from None
        if not isinstance(document, dict) or not isinstance(document.get("choices"), list):
            raise LLMError("response has no 'choices' list: not a chat completion", source=self.url, pointer="/choices")
        return document

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None
        self.close()


def _error_message(body: bytes) -> str:
    """The server's own error message (OpenAI: ``{"error": {"message"}}``), shortened to one line."""
    try:
        document = json.loads(body)
        message = document["error"]["message"] if isinstance(document.get("error"), dict) else document.get("error")
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        message = None
    text = message if isinstance(message, str) and message else body[:200].decode("utf-8", "replace") or "(empty body)"
    return " ".join(text.split())[:300]
