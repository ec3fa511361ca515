"""A workspace's active policy from a backend: verified before it is returned, cached, revalidated with ETags.

Trust rules (DESIGN.md sections 3 and 8), shared by :class:`PolicyClient` and
:class:`AsyncPolicyClient` through :class:`_PolicyStore` (no I/O there):

- every document is verified (hash, then Ed25519 signature against the keyring)
  before it is cached or returned; an unsigned one only with ``allow_unsigned``,
  and then with a warning;
- the keyring is the only root of trust: a client never fetches a key from the
  backend and never writes the keyring. A policy signed by a key the keyring
  does not hold is :class:`~sekuire.compiler.UnknownKeyError` (the user adds keys
  with ``sekuire keys trust``; docs/trust.md);
- every read is bounded (:mod:`sekuire.compiler.httpio`): at most
  ``MAX_POLICY_BYTES`` decoded, one deadline for the whole fetch, no redirects;
- a 304 Not Modified answers with the policy verified earlier, and only when the
  client asked with that policy's ETag;
- rollback protection: once a client holds a policy for a workspace, it accepts
  only the same signed policy again or a strictly newer one (see
  :func:`check_succession`); otherwise it raises :class:`PolicyRollbackError`
  and keeps what it holds. The floor persists beside a file keyring
  (:mod:`.floor`: ``<keyring>.floor.json``, shared by every client and agent
  using that keyring, across restarts); :meth:`~PolicyClient.invalidate_cache`
  does not lower it. A policy naming another workspace is refused always.
"""

from __future__ import annotations

import logging
import os
import threading

import httpx

from ..compiler.errors import BackendError
from ..compiler.policy.backend import (
    DEFAULT_BACKEND,
    DEFAULT_DEADLINE,
    DEFAULT_TIMEOUT,
    Fetched,
    afetch_active_policy_document,
    fetch_active_policy_document,
    verify_active_policy,
)
from ..compiler.policy.document import Policy
from ..compiler.policy.keyring import Keyring, resolve_keyring
from ..compiler.textsafe import clean
from .floor import PolicyRollbackError, RollbackFloor, check_succession, version_order

__all__ = ["AsyncPolicyClient", "PolicyClient", "PolicyRollbackError", "check_succession", "version_order"]

logger = logging.getLogger(__name__)

KeyringLike = Keyring | str | os.PathLike[str] | None
FloorLike = str | os.PathLike[str] | None


class _PolicyStore:
    """Verification and the per-workspace cache and floor: everything both clients share, no network I/O."""

    def __init__(self, keyring: KeyringLike, allow_unsigned: bool, floor_file: FloorLike) -> None:
        self.keyring = resolve_keyring(keyring, missing_ok=True)
        self.allow_unsigned = allow_unsigned
        self.floor = RollbackFloor(floor_file) if floor_file is not None else RollbackFloor.beside(self.keyring)
        self._held: dict[str, Policy] = {}
        self._etags: dict[str, str] = {}
        self._lock = threading.Lock()

    def etag(self, workspace_id: str) -> str | None:
        return self._etags.get(workspace_id)

    def invalidate(self, workspace_id: str) -> None:
        # The held policy stays as the rollback floor; only the right to answer a 304 with it goes.
        with self._lock:
            self._etags.pop(workspace_id, None)

    def not_modified(self, workspace_id: str, fetched: Fetched) -> Policy:
        with self._lock:
            held = self._held.get(workspace_id)
            if held is None or fetched.etag is None or self._etags.get(workspace_id) != fetched.etag:
                raise BackendError("304 Not Modified without a cached policy for this ETag", source=fetched.url)
            return held

    def accept(self, workspace_id: str, fetched: Fetched) -> Policy:
        """Verify a fetched document against the keyring; cache and return it if it may replace what is held."""
        policy = verify_active_policy(fetched, workspace_id, self.keyring, allow_unsigned=self.allow_unsigned)
        with self._lock:
            held = self._held.get(workspace_id)
            check_succession(held, policy, source=fetched.url)
            self.floor.advance(workspace_id, policy, source=fetched.url)
            self._held[workspace_id] = policy
            if fetched.etag:
                self._etags[workspace_id] = fetched.etag
            else:
                self._etags.pop(workspace_id, None)
        if held is None or held.hash != policy.hash:
            logger.info("workspace %s: policy %s (v%s, hash %.16s) accepted", clean(workspace_id), clean(policy.policy_id),
                        clean(policy.version), policy.hash)
        if policy.signature_status == "unsigned":
            logger.warning("workspace %s: policy %s is UNSIGNED; accepted only because allow_unsigned=True",
                           clean(workspace_id), clean(policy.policy_id))
        return policy


class _ClientBase:
    def __init__(
        self, backend: str, keyring: KeyringLike, allow_unsigned: bool, floor_file: FloorLike, deadline: float
    ) -> None:
        self.backend = backend.rstrip("/")
        self.deadline = deadline
        self._store = _PolicyStore(keyring, allow_unsigned, floor_file)

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
        deadline: float = DEFAULT_DEADLINE,
        floor_file: FloorLike = None,
    ) -> None:
        """``keyring`` is read, never written; ``deadline`` bounds each fetch in all (seconds).

        ``floor_file`` is where the rollback floor persists (default: beside the keyring file).
        """
        super().__init__(backend, keyring, allow_unsigned, floor_file, deadline)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(timeout=timeout)

    def fetch_active_policy(self, workspace_id: str) -> Policy:
        """The workspace's active policy, verified; raises BackendError/PolicyError and returns nothing unverified."""
        self._check_workspace(workspace_id)
        fetched = fetch_active_policy_document(
            self.backend, workspace_id, client=self._http, etag=self._store.etag(workspace_id), deadline=self.deadline
        )
        if fetched.document is None:
            return self._store.not_modified(workspace_id, fetched)
        return self._store.accept(workspace_id, fetched)

    def close(self) -> None:
        """Close the HTTP client if this client made it."""
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
        deadline: float = DEFAULT_DEADLINE,
        floor_file: FloorLike = None,
    ) -> None:
        """``keyring`` is read, never written; ``deadline`` bounds each fetch in all (seconds).

        ``floor_file`` is where the rollback floor persists (default: beside the keyring file).
        """
        super().__init__(backend, keyring, allow_unsigned, floor_file, deadline)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient(timeout=timeout)

    async def fetch_active_policy(self, workspace_id: str) -> Policy:
        """The workspace's active policy, verified; raises BackendError/PolicyError and returns nothing unverified."""
        self._check_workspace(workspace_id)
        fetched = await afetch_active_policy_document(
            self.backend, workspace_id, client=self._http, etag=self._store.etag(workspace_id), deadline=self.deadline
        )
        if fetched.document is None:
            return self._store.not_modified(workspace_id, fetched)
        return self._store.accept(workspace_id, fetched)

    async def aclose(self) -> None:
        """Close the HTTP client if this client made it."""
        if self._owns_http:
            await self._http.aclose()

    close = aclose

    async def __aenter__(self) -> AsyncPolicyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
