"""The rollback floor: the newest signed policy verified per workspace, kept beside the keyring across restarts.

A client never accepts a version lower than the highest it has verified for a
workspace (DESIGN.md section 3). The floor of a file keyring ``K`` is the JSON
file ``K.floor.json``::

    {"workspaces": {"<ws>": {"policy_id": "...", "version": "7", "hash": "<hex>"}}}

It is read and advanced under an exclusive ``fcntl`` lock on ``K.floor.lock``
(agents sharing a keyring serialise; the check and the write are one step, so
two agents cannot both move it) and written atomically (a temporary file, then
``os.replace``). Only verified policies move it: an unsigned development policy
never raises the floor of signed ones. A keyring held only in memory has a
floor in memory. A floor file that cannot be read or written is an error: the
policy is not accepted (fail closed); pass ``floor_file`` to put it elsewhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..compiler.errors import IntegrityError, KeyringError, PolicyFormatError
from ..compiler.files import atomic_write, read_limited
from ..compiler.policy.canonical import strict_loads
from ..compiler.policy.keyring import Keyring
from ..compiler.textsafe import clean, quote_value

__all__ = ["FloorEntry", "PolicyRollbackError", "RollbackFloor", "check_succession", "floor_path", "version_order"]

_MAX_FLOOR_BYTES = 16 << 20
# Dotted decimal versions ("7", "1.10.2"); the length cap keeps int() away from huge numbers.
_ORDERED_VERSION = re.compile(r"[0-9]{1,30}(?:\.[0-9]{1,30}){0,7}", re.ASCII)


class PolicyRollbackError(IntegrityError):
    """A validly signed policy that is older than (or not comparable with) the one already held."""

    code = "rollback"


class _Versioned(Protocol):
    @property
    def policy_id(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def hash(self) -> str: ...
    @property
    def signature_status(self) -> str: ...


@dataclass(frozen=True)
class FloorEntry:
    """The newest verified policy of a workspace, as recorded in the floor file."""

    policy_id: str
    version: str
    hash: str
    signature_status: str = "verified"


def version_order(version: str) -> tuple[int, ...] | None:
    """The numeric order key of a dotted decimal version ("1.10" > "1.9", "2" == "2.0"); None if it has none."""
    if not _ORDERED_VERSION.fullmatch(version):
        return None
    parts = [int(part) for part in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def check_succession(held: _Versioned | None, new: _Versioned, *, source: str | None = None) -> None:
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
            f"version {quote_value(new.version)} cannot be ordered against the held version "
            f"{quote_value(held.version)}; refusing it",
            source=source,
            pointer="/version",
        )
    if new_key <= old_key:
        raise PolicyRollbackError(
            f"version {clean(new.version)} is not newer than the held version {clean(held.version)}; "
            "refusing a rollback",
            source=source,
            pointer="/version",
        )


def floor_path(keyring: Keyring) -> Path | None:
    """``<keyring file>.floor.json``, or None for a keyring that has no file."""
    return None if keyring.path is None else keyring.path.with_name(keyring.path.name + ".floor.json")


class RollbackFloor:
    """Per-workspace floors in ``path`` (shared by processes) or, with ``path=None``, in memory."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = None if path is None else Path(path)
        self._memory: dict[str, FloorEntry] = {}
        self._lock = threading.Lock()

    @classmethod
    def beside(cls, keyring: Keyring) -> RollbackFloor:
        """The floor kept next to ``keyring``'s file (in memory if it has none)."""
        return cls(floor_path(keyring))

    def get(self, workspace_id: str) -> FloorEntry | None:
        """The recorded floor of a workspace, None if there is none."""
        with self._locked():
            return self._read().get(workspace_id)

    def advance(self, workspace_id: str, policy: _Versioned, *, source: str | None = None) -> None:
        """Check ``policy`` against the floor and raise the floor to it, as one step under the lock.

        PolicyRollbackError if it is older than the floor; only verified policies are recorded.
        """
        with self._locked():
            floors = self._read()
            check_succession(floors.get(workspace_id), policy, source=source)
            if policy.signature_status != "verified":
                return
            entry = FloorEntry(policy.policy_id, policy.version, policy.hash)
            if floors.get(workspace_id) == entry:
                return
            floors[workspace_id] = entry
            self._write(floors)

    # -- storage ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            if self.path is None:
                yield
                return
            lock_path = self.path.with_name(self.path.name.removesuffix(".json") + ".lock")
            try:
                lock_path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise KeyringError(f"cannot lock the rollback floor: {exc.strerror or exc}", source=str(lock_path)) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the lock

    def _read(self) -> dict[str, FloorEntry]:
        if self.path is None:
            return self._memory
        if not self.path.exists():
            return {}
        try:
            document = strict_loads(read_limited(self.path, _MAX_FLOOR_BYTES))
        except OSError as exc:
            raise KeyringError(f"cannot read the rollback floor: {exc.strerror or exc}", source=str(self.path)) from None
        except PolicyFormatError as exc:
            raise KeyringError(f"the rollback floor is corrupt: {exc.message}", source=str(self.path)) from None
        workspaces = document.get("workspaces") if isinstance(document, dict) else None
        if not isinstance(workspaces, dict):
            raise KeyringError("the rollback floor is corrupt: expected an object", source=str(self.path),
                               pointer="/workspaces")
        floors: dict[str, FloorEntry] = {}
        for ws, entry in workspaces.items():
            fields = [entry.get(name) if isinstance(entry, dict) else None for name in ("policy_id", "version", "hash")]
            if not all(isinstance(value, str) for value in fields):
                raise KeyringError("the rollback floor is corrupt: expected policy_id, version and hash strings",
                                   source=str(self.path), pointer=f"/workspaces/{ws}")
            floors[ws] = FloorEntry(*fields)  # type: ignore[arg-type]
        return floors

    def _write(self, floors: dict[str, FloorEntry]) -> None:
        if self.path is None:
            return
        document = {"workspaces": {ws: {"policy_id": e.policy_id, "version": e.version, "hash": e.hash}
                                   for ws, e in sorted(floors.items())}}
        try:
            atomic_write(self.path, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
                         mode=0o600)
        except OSError as exc:
            raise KeyringError(f"cannot record the rollback floor: {exc.strerror or exc}", source=str(self.path)) from None
