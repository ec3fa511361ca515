"""Trusted Ed25519 public keys by key id.

File format (DESIGN.md section 3)::

    {"keys": {"<key_id>": {"algorithm": "ed25519", "public_key": "<hex>"}}}

Found at ``--keyring FILE``, else ``$SEKUIRE_KEYRING``, else the per-user
default ``$XDG_CONFIG_HOME/sekuire/keyring.json`` (``~/.config/...``). A key id,
once pinned, never silently changes its key: :meth:`Keyring.pin` refuses.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import KeyringError, PolicyFormatError
from ..files import atomic_write, read_limited
from ..textsafe import quote_value
from .canonical import strict_loads

__all__ = ["DEFAULT_KEYRING_ENV", "Keyring", "default_keyring_path", "fingerprint", "resolve_keyring"]

DEFAULT_KEYRING_ENV = "SEKUIRE_KEYRING"
_HEX_KEY = re.compile(r"^[0-9a-f]{64}$")
_MAX_KEYRING_BYTES = 1 << 20


def fingerprint(public_key: bytes) -> str:
    """``SHA256:`` + unpadded base64 of SHA-256 over the 32 raw key bytes (the OpenSSH style; docs/trust.md)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(public_key).digest()).decode("ascii").rstrip("=")


def default_keyring_path() -> Path:
    """``$XDG_CONFIG_HOME/sekuire/keyring.json`` (``~/.config/sekuire/keyring.json``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "sekuire" / "keyring.json"


@dataclass
class Keyring:
    """Public keys (32 raw bytes each) by key id; ``path`` is where ``save`` writes."""

    keys: dict[str, bytes] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, missing_ok: bool = False) -> Keyring:
        """Read a keyring file (an empty keyring at ``path`` if it is missing and ``missing_ok``)."""
        path = Path(path)
        if missing_ok and not path.exists():
            return cls(path=path)
        try:
            document = strict_loads(read_limited(path, _MAX_KEYRING_BYTES))
        except (PolicyFormatError, OSError) as exc:
            raise KeyringError(_reason(exc), source=str(path)) from None
        keys_obj = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys_obj, dict):
            raise KeyringError("expected an object", source=str(path), pointer="/keys")
        keys: dict[str, bytes] = {}
        for key_id, entry in keys_obj.items():
            pointer = f"/keys/{key_id}"
            if not isinstance(entry, dict):
                raise KeyringError("expected an object", source=str(path), pointer=pointer)
            if entry.get("algorithm") != "ed25519":
                raise KeyringError("algorithm must be 'ed25519'", source=str(path), pointer=pointer + "/algorithm")
            public = entry.get("public_key")
            if not isinstance(public, str) or not _HEX_KEY.match(public):
                raise KeyringError("expected 64 lower-case hex digits", source=str(path), pointer=pointer + "/public_key")
            keys[key_id] = bytes.fromhex(public)
        return cls(keys=keys, path=path)

    def get(self, key_id: str) -> bytes | None:
        """The trusted public key of ``key_id``, None if it is not trusted."""
        return self.keys.get(key_id)

    def remove(self, key_id: str) -> None:
        """Stop trusting ``key_id`` (KeyringError if it is not in the keyring); ``save`` to persist."""
        if self.keys.pop(key_id, None) is None:
            raise KeyringError(f"no key {quote_value(key_id)} in the keyring", source=str(self.path) if self.path else None)

    def pin(self, key_id: str, public_key: bytes) -> bool:
        """Add a key; True if it was new. A different key for a pinned id is refused."""
        if not isinstance(key_id, str) or not key_id:
            raise KeyringError("a key id must be a non-empty string")
        if len(public_key) != 32:
            raise KeyringError(f"key {quote_value(key_id)} is not a 32-byte Ed25519 public key")
        known = self.keys.get(key_id)
        if known is not None:
            if known != public_key:
                raise KeyringError(
                    f"key {quote_value(key_id)} is pinned to a different public key; refusing to replace it",
                    source=str(self.path) if self.path else None,
                )
            return False
        self.keys[key_id] = public_key
        return True

    def to_json(self) -> dict[str, object]:
        """The keyring file's document."""
        return {
            "keys": {
                key_id: {"algorithm": "ed25519", "public_key": key.hex()} for key_id, key in sorted(self.keys.items())
            }
        }

    def save(self) -> None:
        """Write the keyring file atomically (temporary file, then rename)."""
        if self.path is None:
            raise KeyringError("keyring has no file to save to")
        import json

        atomic_write(self.path, (json.dumps(self.to_json(), indent=2) + "\n").encode())


def resolve_keyring(keyring: Keyring | str | os.PathLike[str] | None, *, missing_ok: bool = False) -> Keyring:
    """A Keyring object as given, a file path, or the environment/user default (empty if absent).

    A named file must exist unless ``missing_ok`` (``pull`` creates the keyring it pins keys in).
    """
    if isinstance(keyring, Keyring):
        return keyring
    if keyring is not None:
        return Keyring.load(keyring, missing_ok=missing_ok)
    env = os.environ.get(DEFAULT_KEYRING_ENV)
    if env:
        return Keyring.load(env, missing_ok=missing_ok)
    return Keyring.load(default_keyring_path(), missing_ok=True)


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)
