"""A workspace's active policy from a backend: verified before it is returned, cached, revalidated with ETags.

Trust rules (DESIGN.md sections 3 and 8), shared by :class:`PolicyClient` and
:class:`AsyncPolicyClient` through :class:`_PolicyStore` (no I/O there):

- every document is verified (hash, then Ed25519 signature against the keyring)
  before it is cached or returned; an unsigned one only with ``allow_unsigned``,
  and then with a warning;
- a signing key missing from the keyring is fetched from ``/v1/keys/<id>`` and
  pinned only once it has verified the policy that named it (trust on first
  use); a pinned key id never changes its key;
- a 304 Not Modified answers with the policy verified earlier, and only when the
  client asked with that policy's ETag;
- rollback protection: once a client holds a policy for a workspace, it accepts
  only the same signed policy again or a strictly newer one (see
  :func:`check_succession`); otherwise it raises :class:`PolicyRollbackError`
  and keeps what it holds. The floor lives in the client's memory:
  :meth:`~PolicyClient.invalidate_cache` does not lower it, a new client starts
  without one. A policy naming another workspace is refused always.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

import httpx

from ..compiler.errors import BackendError, IntegrityError, KeyringError
from ..compiler.policy.backend import (
    DEFAULT_BACKEND,
    DEFAULT_TIMEOUT,
    Fetched,
    afetch_active_policy_document,
    afetch_public_key,
    fetch_active_policy_document,
    fetch_public_key,
    verify_active_policy,
)
from ..compiler.policy.document import Policy
from ..compiler.policy.keyring import Keyring, resolve_keyring

__all__ = ["AsyncPolicyClient", "PolicyClient", "PolicyRollbackError", "check_succession", "version_order"]

logger = logging.getLogger(__name__)

KeyringLike = Keyring | str | os.PathLike[str] | None

# Dotted decimal versions ("7", "1.10.2"); the length cap keeps int() away from huge numbers.
_ORDERED_VERSION = re.compile(r"[0-9]{1,30}(?:\.[0-9]{1,30}){0,7}", re.ASCII)


class PolicyRollbackError(IntegrityError):
    """A validly signed policy that is older than (or not comparable with) the one already held."""

    code = "rollback"


def version_order(version: str) -> tuple[int, ...] | None:
    """The numeric order key of a dotted decimal version ("1.10" > "1.9", "2" == "2.0"); None if it has none."""
    if not _ORDERED_VERSION.fullmatch(version):
        return None
    parts = [int(part) for part in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def check_succession(held: Policy | None, new: Policy, *, source: str | None = None) -> None:
    """Refuse ``new`` unless it may replace ``held`` for the same workspace.

    Only signed fields decide (``activated_at``/``updated_at`` are not signed, so
    a replayed policy could carry any timestamp): the very same signed policy is
    accepted again; otherwise both versions must be dotted decimals and the new
    one strictly greater. A version that cannot be ordered is refused, as is an
    unsigned policy after a signed one. A deliberate rollback is published as a
    new, higher version.
    """
    if held is None:
        return
    if held.signature_status == "verified" and new.signature_status != "verified":
        raise PolicyRollbackError("an unsigned policy cannot replace a signed one", source=source, pointer="/signature")
    if (new.hash, new.policy_id, new.version) == (held.hash, held.policy_id, held.version):
        return
    old_key, new_key = version_order(held.version), version_order(new.version)
    if old_key is None or new_key is None:
        raise PolicyRollbackError(
            f"version {new.version!r} cannot be ordered against the held version {held.version!r}; refusing it",
            source=source,
            pointer="/version",
        )
    if new_key <= old_key:
        raise PolicyRollbackError(
            f"version {new.version} is not newer than the held version {held.version}; refusing a rollback",
            source=source,
            pointer="/version",
        )


class _PolicyStore:
    """Verification, pinning and the per-workspace cache: everything both clients share, no I/O."""

    def __init__(self, keyring: KeyringLike, allow_unsigned: bool) -> None:
        self.keyring = resolve_keyring(keyring, missing_ok=True)
        self.allow_unsigned = allow_unsigned
        self._held: dict[str, Policy] = {}
        self._etags: dict[str, str] = {}
        self._lock = threading.Lock()

    def etag(self, workspace_id: str) -> str | None:
        return self._etags.get(workspace_id)

    def invalidate(self, workspace_id: str) -> None:
        # The held policy stays as the rollback floor; only the right to answer a 304 with it goes.
        with self._lock:
            self._etags.pop(workspace_id, None)

    def key_to_fetch(self, document: Any) -> str | None:
        """The signing key id to fetch from the backend, if the document names one we do not hold."""
        if not isinstance(document, dict) or not document.get("signature"):
            return None
        key_id = document.get("signing_key_id")
        if isinstance(key_id, str) and key_id and self.keyring.get(key_id) is None:
            return key_id
        return None

    def not_modified(self, workspace_id: str, fetched: Fetched) -> Policy:
        with self._lock:
            held = self._held.get(workspace_id)
            if held is None or fetched.etag is None or self._etags.get(workspace_id) != fetched.etag:
                raise BackendError("304 Not Modified without a cached policy for this ETag", source=fetched.url)
            return held

    def accept(self, workspace_id: str, fetched: Fetched, new_key: tuple[str, bytes] | None) -> Policy:
        """Verify a fetched document; cache and return it if it may replace what is held."""
        keyring = self.keyring
        if new_key is not None:
            keyring = Keyring(keys={**self.keyring.keys, new_key[0]: new_key[1]})
        policy = verify_active_policy(fetched, workspace_id, keyring, allow_unsigned=self.allow_unsigned)
        with self._lock:
            held = self._held.get(workspace_id)
            check_succession(held, policy, source=fetched.url)
            if new_key is not None:
                self._pin(*new_key)
            self._held[workspace_id] = policy
            if fetched.etag:
                self._etags[workspace_id] = fetched.etag
            else:
                self._etags.pop(workspace_id, None)
        if held is None or held.hash != policy.hash:
            logger.info("workspace %s: policy %s (v%s, hash %.16s) accepted", workspace_id, policy.policy_id,
                        policy.version, policy.hash)
        if policy.signature_status == "unsigned":
            logger.warning("workspace %s: policy %s is UNSIGNED; accepted only because allow_unsigned=True",
                           workspace_id, policy.policy_id)
        return policy

    def _pin(self, key_id: str, public_key: bytes) -> None:
        if not self.keyring.pin(key_id, public_key) or self.keyring.path is None:
            return
        try:
            self.keyring.save()
        except (KeyringError, OSError) as exc:
            # The key stays pinned in memory; only persistence failed.
            logger.warning("could not save keyring %s after pinning %s: %s", self.keyring.path, key_id, exc)
        else:
            logger.info("pinned signing key %s in %s", key_id, self.keyring.path)


class _ClientBase:
    def __init__(self, backend: str, keyring: KeyringLike, allow_unsigned: bool) -> None:
        self.backend = backend.rstrip("/")
        self._store = _PolicyStore(keyring, allow_unsigned)

    @property
    def keyring(self) -> Keyring:
        return self._store.keyring

    def invalidate_cache(self, workspace_id: str) -> None:
        """Make the next fetch download and verify the policy in full (no If-None-Match)."""
        self._store.invalidate(workspace_id)

    @staticmethod
    def _check_workspace(workspace_id: str) -> None:
        if not isinstance(workspace_id, str) or not workspace_id:
            raise ValueError("workspace_id must be a non-empty string")


class PolicyClient(_ClientBase):
    """Fetch verified active policies over a pooled :class:`httpx.Client` (closed by :meth:`close` if owned)."""

    def __init__(
        self,
        backend: str = DEFAULT_BACKEND,
        *,
        keyring: KeyringLike = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        allow_unsigned: bool = False,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(backend, keyring, allow_unsigned)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(timeout=timeout)

    def fetch_active_policy(self, workspace_id: str) -> Policy:
        """The workspace's active policy, verified; raises BackendError/PolicyError and returns nothing unverified."""
        self._check_workspace(workspace_id)
        fetched = fetch_active_policy_document(
            self.backend, workspace_id, client=self._http, etag=self._store.etag(workspace_id)
        )
        if fetched.document is None:
            return self._store.not_modified(workspace_id, fetched)
        key_id = self._store.key_to_fetch(fetched.document)
        new_key = None if key_id is None else (key_id, fetch_public_key(self.backend, key_id, client=self._http))
        return self._store.accept(workspace_id, fetched, new_key)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncPolicyClient(_ClientBase):
    """The asyncio twin of :class:`PolicyClient` over :class:`httpx.AsyncClient`."""

    def __init__(
        self,
        backend: str = DEFAULT_BACKEND,
        *,
        keyring: KeyringLike = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        allow_unsigned: bool = False,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(backend, keyring, allow_unsigned)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient(timeout=timeout)

    async def fetch_active_policy(self, workspace_id: str) -> Policy:
        """The workspace's active policy, verified; raises BackendError/PolicyError and returns nothing unverified."""
        self._check_workspace(workspace_id)
        fetched = await afetch_active_policy_document(
            self.backend, workspace_id, client=self._http, etag=self._store.etag(workspace_id)
        )
        if fetched.document is None:
            return self._store.not_modified(workspace_id, fetched)
        key_id = self._store.key_to_fetch(fetched.document)
        new_key = None if key_id is None else (key_id, await afetch_public_key(self.backend, key_id, client=self._http))
        return self._store.accept(workspace_id, fetched, new_key)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    close = aclose

    async def __aenter__(self) -> AsyncPolicyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
