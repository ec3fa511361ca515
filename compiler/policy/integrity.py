"""policy.json integrity: BLAKE3 content hash and Ed25519 envelope signature.

- ``hash`` = lower-case hex BLAKE3-256 of canonical_json(content);
- ``signature`` = lower-case hex Ed25519 over
  canonical_json({hash, policy_id, version, workspace_id}).

Verification fails closed, each failure with its own error class. The public key
comes from the trusted keyring; a ``signing_public_key`` carried by the
document itself is used only when the caller passes ``trust_embedded_key=True``.
"""

from __future__ import annotations

import hmac
import re
from typing import Any, Literal

import blake3
from nacl.exceptions import BadSignatureError as _NaclBadSignature
from nacl.signing import SigningKey, VerifyKey

from ..errors import (
    BadSignatureError,
    HashMismatchError,
    UnknownKeyError,
    UnsignedPolicyError,
)
from .canonical import canonical_json
from .keyring import Keyring

__all__ = [
    "SignatureStatus",
    "content_hash",
    "sign_document",
    "signed_message",
    "verify_document",
]

SignatureStatus = Literal["verified", "unsigned"]
_HEX_SIG = re.compile(r"^[0-9a-f]{128}$")
_HEX_KEY = re.compile(r"^[0-9a-f]{64}$")


def content_hash(content: Any) -> str:
    """Lower-case hex BLAKE3-256 of the canonical JSON of ``content``: a policy.json's ``hash``."""
    return blake3.blake3(canonical_json(content)).hexdigest()


def signed_message(*, hash: str, policy_id: str, version: str, workspace_id: str) -> bytes:
    return canonical_json({"hash": hash, "policy_id": policy_id, "version": version, "workspace_id": workspace_id})


def sign_document(document: dict[str, Any], seed: bytes, key_id: str) -> dict[str, Any]:
    """Return a copy of ``document`` with ``hash``, ``signature`` and ``signing_key_id`` set."""
    signed = dict(document)
    signed["hash"] = content_hash(document["content"])
    message = signed_message(
        hash=signed["hash"],
        policy_id=document["policy_id"],
        version=document["version"],
        workspace_id=document["workspace_id"],
    )
    signed["signature"] = SigningKey(seed).sign(message).signature.hex()
    signed["signing_key_id"] = key_id
    return signed


def verify_document(
    document: dict[str, Any],
    keyring: Keyring,
    *,
    allow_unsigned: bool = False,
    trust_embedded_key: bool = False,
) -> SignatureStatus:
    """Check hash then signature of an envelope already validated for shape."""
    expected = content_hash(document["content"])
    # Exact comparison: a hash in upper case is not the lower-case hex the format fixes. As bytes:
    # compare_digest raises TypeError for a str with non-ASCII characters (which simply does not match).
    if not hmac.compare_digest(expected.encode(), document["hash"].encode("utf-8", "surrogatepass")):
        raise HashMismatchError("hash mismatch: content does not match the hash field", pointer="/hash")

    signature = document.get("signature")
    if not signature:
        if allow_unsigned:
            return "unsigned"
        raise UnsignedPolicyError("unsigned policy: no signature (allow unsigned policies only for development)",
                                  pointer="/signature")
    key_id = document.get("signing_key_id")
    if not key_id:
        raise UnsignedPolicyError("signed policy names no signing_key_id", pointer="/signing_key_id")

    public = keyring.get(key_id)
    if public is None and trust_embedded_key:
        embedded = document.get("signing_public_key")
        if isinstance(embedded, str) and _HEX_KEY.match(embedded):
            public = bytes.fromhex(embedded)
    if public is None:
        raise UnknownKeyError(f"unknown signing key {key_id!r}: not in the trusted keyring", pointer="/signing_key_id")

    if not _HEX_SIG.match(signature):
        raise BadSignatureError("bad signature: expected 128 lower-case hex digits", pointer="/signature")
    message = signed_message(
        hash=document["hash"],
        policy_id=document["policy_id"],
        version=document["version"],
        workspace_id=document["workspace_id"],
    )
    try:
        VerifyKey(public).verify(message, bytes.fromhex(signature))
    except (_NaclBadSignature, ValueError):
        raise BadSignatureError(
            f"bad signature: not made by key {key_id!r} over this policy_id, workspace_id, version and hash",
            pointer="/signature",
        ) from None
    return "verified"
