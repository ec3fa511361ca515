"""HTTP access to a policy backend (or a static tree published by ``sekuire publish``).

Endpoints (DESIGN.md section 7):
- ``GET {backend}/v1/workspaces/{ws}/policies/active`` -> policy.json
- ``GET {backend}/v1/keys/{key_id}`` -> ``{"key_id", "algorithm": "ed25519", "public_key": "<hex>"}``
- ``POST {backend}/v1/workspaces/{ws}/agents`` <- an agent manifest (``sekuire push``) -> a JSON object

Only fetching and shape checks live here; verification is the caller's
(:func:`sekuire.compiler.parse_policy`). Third-party errors become BackendError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import BackendError, IntegrityError, PolicyFormatError
from .canonical import strict_loads
from .document import MAX_POLICY_BYTES, Policy, parse_policy
from .keyring import Keyring

__all__ = [
    "DEFAULT_BACKEND",
    "DEFAULT_TIMEOUT",
    "Fetched",
    "active_policy_url",
    "afetch_active_policy_document",
    "afetch_public_key",
    "fetch_active_policy_document",
    "fetch_public_key",
    "key_url",
    "parse_key_document",
    "push_agent_manifest",
    "verify_active_policy",
]

DEFAULT_BACKEND = "https://api.sekuire.ai"
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
_HEX_KEY = re.compile(r"^[0-9a-f]{64}$")


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


def _decode(url: str, response: httpx.Response, limit: int) -> Any:
    if response.status_code == 404:
        raise BackendError("not found (404)", source=url)
    if response.status_code >= 400:
        raise BackendError(f"HTTP {response.status_code}", source=url)
    body = response.content
    if len(body) > limit:
        raise BackendError(f"response larger than {limit} bytes", source=url)
    try:
        return strict_loads(body)
    except PolicyFormatError as exc:
        raise BackendError(str(exc), source=url) from None


def _request_failed(url: str, exc: httpx.HTTPError) -> BackendError:
    return BackendError(f"request failed: {exc.__class__.__name__}: {exc}", source=url)


def _get(client: httpx.Client | None, url: str, headers: dict[str, str]) -> httpx.Response:
    try:
        if client is None:
            with httpx.Client(timeout=DEFAULT_TIMEOUT) as own:
                return own.get(url, headers=headers)
        return client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise _request_failed(url, exc) from None


async def _aget(client: httpx.AsyncClient | None, url: str, headers: dict[str, str]) -> httpx.Response:
    try:
        if client is None:
            async with httpx.AsyncClient(timeout=DEFAULT_TIMEOUT) as own:
                return await own.get(url, headers=headers)
        return await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise _request_failed(url, exc) from None


def _policy_headers(etag: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if etag:
        headers["If-None-Match"] = etag
    return headers


def _policy_fetched(url: str, response: httpx.Response, etag: str | None) -> Fetched:
    if response.status_code == 304:
        return Fetched(url=url, document=None, etag=etag)
    document = _decode(url, response, MAX_POLICY_BYTES)
    return Fetched(url=url, document=document, etag=response.headers.get("ETag"), body=response.content)


def fetch_active_policy_document(
    backend: str, workspace_id: str, *, client: httpx.Client | None = None, etag: str | None = None
) -> Fetched:
    url = active_policy_url(backend, workspace_id)
    return _policy_fetched(url, _get(client, url, _policy_headers(etag)), etag)


async def afetch_active_policy_document(
    backend: str, workspace_id: str, *, client: httpx.AsyncClient | None = None, etag: str | None = None
) -> Fetched:
    url = active_policy_url(backend, workspace_id)
    return _policy_fetched(url, await _aget(client, url, _policy_headers(etag)), etag)


def parse_key_document(url: str, key_id: str, document: Any) -> bytes:
    if not isinstance(document, dict):
        raise BackendError("expected a JSON object", source=url)
    if document.get("algorithm", "ed25519") != "ed25519":
        raise BackendError("algorithm must be 'ed25519'", source=url, pointer="/algorithm")
    if document.get("key_id", key_id) != key_id:
        raise BackendError(f"answered for key {document.get('key_id')!r}, not {key_id!r}", source=url, pointer="/key_id")
    public = document.get("public_key")
    if not isinstance(public, str) or not _HEX_KEY.match(public):
        raise BackendError("expected 64 lower-case hex digits", source=url, pointer="/public_key")
    return bytes.fromhex(public)


# Keys and push answers are small; anything bigger is not what we asked for.
_MAX_SMALL_ANSWER_BYTES = 1 << 16


def fetch_public_key(backend: str, key_id: str, *, client: httpx.Client | None = None) -> bytes:
    url = key_url(backend, key_id)
    response = _get(client, url, {"Accept": "application/json"})
    return parse_key_document(url, key_id, _decode(url, response, _MAX_SMALL_ANSWER_BYTES))


async def afetch_public_key(backend: str, key_id: str, *, client: httpx.AsyncClient | None = None) -> bytes:
    url = key_url(backend, key_id)
    response = await _aget(client, url, {"Accept": "application/json"})
    return parse_key_document(url, key_id, _decode(url, response, _MAX_SMALL_ANSWER_BYTES))


def push_agent_manifest(
    backend: str, workspace_id: str | None, manifest: dict[str, Any], *, client: httpx.Client | None = None
) -> dict[str, Any]:
    """Register an agent manifest with the workspace (``None``: with no workspace, ``POST /v1/agents``).

    Returns the backend's JSON answer (``{}`` if it sent none).
    """
    scope = "" if workspace_id is None else f"/workspaces/{quote(workspace_id, safe='')}"
    url = f"{backend.rstrip('/')}/v1{scope}/agents"
    try:
        if client is None:
            with httpx.Client(timeout=DEFAULT_TIMEOUT) as own:
                response = own.post(url, json=manifest, headers={"Accept": "application/json"})
        else:
            response = client.post(url, json=manifest, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise _request_failed(url, exc) from None
    if response.status_code < 400 and not response.content.strip():
        return {}
    answer = _decode(url, response, _MAX_SMALL_ANSWER_BYTES)
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
            f"backend answered with workspace {policy.workspace_id!r}, not {workspace_id!r}",
            source=fetched.url,
            pointer="/workspace_id",
        )
    if policy.status != "active":
        raise BackendError(f"policy status is {policy.status!r}, not 'active'", source=fetched.url, pointer="/status")
    return policy
