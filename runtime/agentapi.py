"""Bounded JSON requests to the backend's agent endpoints (DESIGN.md section 10): heartbeat, tasks, results.

Every answer is read in chunks up to a byte cap and under one total deadline,
so a backend that streams forever, or trickles a byte at a time, costs at
most ``deadline`` seconds and ``max_bytes`` of memory. Redirects are not
followed. Every failure (transport, status, size, time, JSON) is one
:class:`BackendError` naming the URL; nothing from the body is echoed into it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

import httpx

from ..compiler.errors import BackendError, PolicyFormatError
from ..compiler.httpio import userinfo_as_header
from ..compiler.policy.canonical import strict_loads

__all__ = [
    "DEFAULT_DEADLINE",
    "MAX_ANSWER_BYTES",
    "agent_url",
    "arequest_json",
    "request_json",
    "sanitize",
]

#: Total seconds one request may take, connection to last byte.
DEFAULT_DEADLINE = 10.0
#: The agent endpoints answer small objects; a task list of 1 MiB is already absurd.
MAX_ANSWER_BYTES = 1 << 20


def agent_url(backend: str, workspace_id: str, agent_id: str, *tail: str) -> str:
    """``{backend}/v1/workspaces/<ws>/agents/<agent_id>/<tail...>``, each segment percent-encoded."""
    segments = ["v1", "workspaces", workspace_id, "agents", agent_id, *tail]
    if any(segment in ("", ".", "..") for segment in segments):
        # quote() keeps dots: a dot segment would move the request to another endpoint.
        raise ValueError(f"an empty, '.' or '..' path segment cannot name a workspace, agent or task: {segments[2:]}")
    return backend.rstrip("/") + "/" + "/".join(quote(s, safe="") for s in segments)


def sanitize(text: object, limit: int = 200) -> str:
    """One printable line of at most ``limit`` characters (for messages that leave the process or reach logs)."""
    line = "".join(ch if ch.isprintable() else " " for ch in str(text)).strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _check_status(url: str, status: int) -> None:
    if status >= 300:
        raise BackendError(f"HTTP {status}", source=url)


def _parse(url: str, body: bytes) -> Any:
    if not body.strip():
        return None
    try:
        return strict_loads(body)
    except PolicyFormatError as exc:
        raise BackendError(f"not JSON: {exc.message}", source=url) from None


def _too_big(url: str, max_bytes: int) -> BackendError:
    return BackendError(f"answer larger than {max_bytes} bytes", source=url)


def request_json(
    client: httpx.Client,
    method: str,
    url: str,
    body: Any = None,
    *,
    max_bytes: int = MAX_ANSWER_BYTES,
    deadline: float = DEFAULT_DEADLINE,
) -> Any:
    """Send ``body`` as JSON (if not None) and return the decoded answer (None for an empty one)."""
    end = time.monotonic() + deadline
    chunks: list[bytes] = []
    size = 0
    try:
        # Each socket operation also times out at the deadline: the whole call ends within about twice it.
        target, headers = userinfo_as_header(url, {"Accept": "application/json"})
        with client.stream(method, target, json=body, timeout=httpx.Timeout(deadline), follow_redirects=False,
                           headers=headers) as response:
            _check_status(url, response.status_code)
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise _too_big(url, max_bytes)
                if time.monotonic() > end:
                    raise BackendError(f"no complete answer within {deadline:g} s", source=url)
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise BackendError(f"request failed: {exc.__class__.__name__}: {sanitize(exc)}", source=url) from None
    return _parse(url, b"".join(chunks))


async def arequest_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    body: Any = None,
    *,
    max_bytes: int = MAX_ANSWER_BYTES,
    deadline: float = DEFAULT_DEADLINE,
) -> Any:
    """The asyncio twin of :func:`request_json`; the deadline is exact (one timeout around the whole call)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(deadline):
            target, headers = userinfo_as_header(url, {"Accept": "application/json"})
            async with client.stream(method, target, json=body, timeout=httpx.Timeout(deadline), follow_redirects=False,
                                     headers=headers) as response:
                _check_status(url, response.status_code)
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise _too_big(url, max_bytes)
                    chunks.append(chunk)
    except TimeoutError:
        raise BackendError(f"no complete answer within {deadline:g} s", source=url) from None
    except httpx.HTTPError as exc:
        raise BackendError(f"request failed: {exc.__class__.__name__}: {sanitize(exc)}", source=url) from None
    return _parse(url, b"".join(chunks))
