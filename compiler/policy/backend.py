"""HTTP access to a policy backend (or a static tree published by ``sekuire publish``).

Endpoints (DESIGN.md section 7):
- ``GET {backend}/v1/workspaces/{ws}/policies/active`` -> policy.json
- ``GET {backend}/v1/keys/{key_id}`` -> ``{"key_id", "algorithm": "ed25519", "public_key": "<hex>", "rotation"?}``
  (read only by explicit trust commands: a key from the backend is never trusted for being served)
- ``POST {backend}/v1/workspaces/{ws}/agents`` <- an agent manifest (``sekuire push``) -> a JSON object

Only fetching and shape checks live here; verification is the caller's
(:func:`sekuire.compiler.parse_policy`). Third-party errors become BackendError.
Every read is bounded (:mod:`.httpio`: decoded size, one deadline per call, no
redirects) and every URL in an error is redacted (:mod:`.textsafe`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import BackendError, IntegrityError, PolicyFormatError
from ..httpio import BoundedResponse, arequest_bounded, request_bounded
from ..textsafe import quote_value, redact_url
from .canonical import strict_loads
from .document import MAX_POLICY_BYTES, Policy, parse_policy
from .keyring import Keyring

__all__ = [
    "DEFAULT_BACKEND",
    "DEFAULT_DEADLINE",
    "DEFAULT_TIMEOUT",
    "Fetched",
    "KeyDocument",
    "active_policy_url",
    "afetch_active_policy_document",
    "fetch_active_policy_document",
    "fetch_key_document",
    "fetch_public_key",
    "key_url",
    "parse_key_document",
    "push_agent_manifest",
    "verify_active_policy",
]

DEFAULT_BACKEND = "https://api.sekuire.ai"
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
#: Seconds one fetch may take in all (connect, headers and body), however the server paces its bytes.
DEFAULT_DEADLINE = 15.0
_HEX_KEY = re.compile(r"^[0-9a-f]{64}$")
_HEX_SIG = re.compile(r"^[0-9a-f]{128}$")


@dataclass(frozen=True)
class Fetched:
    """A fetched JSON document; ``document`` is None when the server answered 304 Not Modified."""

    url: str
    document: Any
    etag: str | None
    body: bytes = b""


def active_policy_url(backend: str, workspace_id: str) -> str:
    return f"{backend.rstrip('/')}/v1/workspaces/{quote(workspace_id, safe='')}/policies/active"


def key_url(backend: str, key_id: str) -> str:
    return f"{backend.rstrip('/')}/v1/keys/{quote(key_id, safe='')}"


def _fail(url: str) -> Callable[[str], BackendError]:
    return lambda message: BackendError(message, source=url)


def _decode(url: str, response: BoundedResponse, *, expect: tuple[int, ...] = (200,)) -> Any:
    """The JSON of an answer whose status is one of ``expect``; anything else is a BackendError, the body unparsed."""
    if response.status == 404:
        raise BackendError("not found (404)", source=url)
    if response.status not in expect:
        raise BackendError(f"HTTP {response.status}", source=url)
    try:
        return strict_loads(response.body)
    except PolicyFormatError as exc:
        raise BackendError(exc.message, source=url) from None


def _get(client: httpx.Client | None, url: str, headers: dict[str, str], limit: int, deadline: float) -> BoundedResponse:
    shown = redact_url(url)
    if client is None:
        with httpx.Client(timeout=DEFAULT_TIMEOUT) as own:
            return request_bounded(own, "GET", url, headers=headers, limit=limit, timeout=deadline, fail=_fail(shown))
    return request_bounded(client, "GET", url, headers=headers, limit=limit, timeout=deadline, fail=_fail(shown))


async def _aget(
    client: httpx.AsyncClient | None, url: str, headers: dict[str, str], limit: int, deadline: float
) -> BoundedResponse:
    shown = redact_url(url)
    if client is None:
        async with httpx.AsyncClient(timeout=DEFAULT_TIMEOUT) as own:
            return await arequest_bounded(own, "GET", url, headers=headers, limit=limit, timeout=deadline,
                                          fail=_fail(shown))
    return await arequest_bounded(client, "GET", url, headers=headers, limit=limit, timeout=deadline, fail=_fail(shown))


def _policy_headers(etag: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if etag:
        headers["If-None-Match"] = etag
    return headers


def _policy_fetched(url: str, response: BoundedResponse, etag: str | None) -> Fetched:
    shown = redact_url(url)
    if response.status == 304:
        return Fetched(url=shown, document=None, etag=etag)
    document = _decode(shown, response)
    return Fetched(url=shown, document=document, etag=response.headers.get("ETag"), body=response.body)


def fetch_active_policy_document(
    backend: str,
    workspace_id: str,
    *,
    client: httpx.Client | None = None,
    etag: str | None = None,
    deadline: float = DEFAULT_DEADLINE,
) -> Fetched:
    """GET the active policy (at most MAX_POLICY_BYTES decoded, within ``deadline`` seconds); ``Fetched.url`` is redacted."""
    url = active_policy_url(backend, workspace_id)
    return _policy_fetched(url, _get(client, url, _policy_headers(etag), MAX_POLICY_BYTES, deadline), etag)


async def afetch_active_policy_document(
    backend: str,
    workspace_id: str,
    *,
    client: httpx.AsyncClient | None = None,
    etag: str | None = None,
    deadline: float = DEFAULT_DEADLINE,
) -> Fetched:
    url = active_policy_url(backend, workspace_id)
    return _policy_fetched(url, await _aget(client, url, _policy_headers(etag), MAX_POLICY_BYTES, deadline), etag)


@dataclass(frozen=True)
class KeyDocument:
    """A key served at ``/v1/keys/<id>``: not trusted by itself; ``rotation`` is ``(endorsed_by, signature hex)``."""

    key_id: str
    public_key: bytes
    rotation: tuple[str, str] | None = None


def parse_key_document(url: str, key_id: str, document: Any) -> KeyDocument:
    """Check the shape of a key document (DESIGN.md section 10); says nothing about whether to trust it."""
    if not isinstance(document, dict):
        raise BackendError("expected a JSON object", source=url)
    if document.get("algorithm", "ed25519") != "ed25519":
        raise BackendError("algorithm must be 'ed25519'", source=url, pointer="/algorithm")
    if document.get("key_id", key_id) != key_id:
        raise BackendError(f"answered for key {quote_value(document.get('key_id'))}, not {quote_value(key_id)}",
                           source=url, pointer="/key_id")
    public = document.get("public_key")
    if not isinstance(public, str) or not _HEX_KEY.match(public):
        raise BackendError("expected 64 lower-case hex digits", source=url, pointer="/public_key")
    rotation = document.get("rotation")
    endorsement = None
    if rotation is not None:
        if not isinstance(rotation, dict):
            raise BackendError("expected an object", source=url, pointer="/rotation")
        endorsed_by, signature = rotation.get("endorsed_by"), rotation.get("signature")
        if not isinstance(endorsed_by, str) or not endorsed_by:
            raise BackendError("expected a key id", source=url, pointer="/rotation/endorsed_by")
        if not isinstance(signature, str) or not _HEX_SIG.match(signature):
            raise BackendError("expected 128 lower-case hex digits", source=url, pointer="/rotation/signature")
        endorsement = (endorsed_by, signature)
    return KeyDocument(key_id, bytes.fromhex(public), endorsement)


# Keys and push answers are small; anything bigger is not what we asked for.
_MAX_SMALL_ANSWER_BYTES = 1 << 16


def fetch_key_document(
    backend: str, key_id: str, *, client: httpx.Client | None = None, deadline: float = DEFAULT_DEADLINE
) -> KeyDocument:
    """GET ``/v1/keys/<id>``: for explicit trust commands only (``keys trust``, ``policy pull``), never for agents."""
    url = key_url(backend, key_id)
    response = _get(client, url, {"Accept": "application/json"}, _MAX_SMALL_ANSWER_BYTES, deadline)
    shown = redact_url(url)
    return parse_key_document(shown, key_id, _decode(shown, response))


def fetch_public_key(
    backend: str, key_id: str, *, client: httpx.Client | None = None, deadline: float = DEFAULT_DEADLINE
) -> bytes:
    """The public key bytes of :func:`fetch_key_document` (not trusted by being fetched)."""
    return fetch_key_document(backend, key_id, client=client, deadline=deadline).public_key


def push_agent_manifest(
    backend: str, workspace_id: str | None, manifest: dict[str, Any], *, client: httpx.Client | None = None
) -> dict[str, Any]:
    """Register an agent manifest with the workspace (``None``: with no workspace, ``POST /v1/agents``).

    Returns the backend's JSON answer (``{}`` if it sent none).
    """
    scope = "" if workspace_id is None else f"/workspaces/{quote(workspace_id, safe='')}"
    url = f"{backend.rstrip('/')}/v1{scope}/agents"
    shown = redact_url(url)
    body = json.dumps(manifest, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    options: dict[str, Any] = {"headers": headers, "content": body, "limit": _MAX_SMALL_ANSWER_BYTES,
                               "timeout": DEFAULT_DEADLINE, "fail": _fail(shown)}
    if client is None:
        with httpx.Client(timeout=DEFAULT_TIMEOUT) as own:
            response = request_bounded(own, "POST", url, **options)
    else:
        response = request_bounded(client, "POST", url, **options)
    if 200 <= response.status < 300 and not response.body.strip():
        return {}
    answer = _decode(shown, response, expect=(200, 201, 202))
    return answer if isinstance(answer, dict) else {}


def verify_active_policy(
    fetched: Fetched,
    workspace_id: str,
    keyring: Keyring,
    *,
    allow_unsigned: bool = False,
    trust_embedded_key: bool = False,
) -> Policy:
    """Verify a fetched active policy: hash and signature, the workspace asked for, status ``active``."""
    policy = parse_policy(
        fetched.document,
        keyring,
        allow_unsigned=allow_unsigned,
        trust_embedded_key=trust_embedded_key,
        source=fetched.url,
    )
    if policy.workspace_id != workspace_id:
        raise IntegrityError(
            f"backend answered with workspace {quote_value(policy.workspace_id)}, not {quote_value(workspace_id)}",
            source=fetched.url,
            pointer="/workspace_id",
        )
    if policy.status != "active":
        raise BackendError(f"policy status is {quote_value(policy.status)}, not 'active'", source=fetched.url, pointer="/status")
    return policy
