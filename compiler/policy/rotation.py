"""Key rotation statements: a trusted key endorsing a new signing key (DESIGN.md section 10, docs/trust.md).

A key document at ``/v1/keys/<id>`` may carry
``"rotation": {"endorsed_by": "<trusted key id>", "signature": "<hex>"}``, where
the signature is Ed25519 by the ``endorsed_by`` key over
``canonical_json({"algorithm": "ed25519", "key_id": <id>, "public_key": <hex>})``.
A new key is trusted through a statement only when ``endorsed_by`` is already in
the keyring and the signature verifies; the keyring is never extended by a
chain of statements whose first link is not in it.
"""

from __future__ import annotations

import re

from nacl.exceptions import BadSignatureError as _NaclBadSignature
from nacl.signing import SigningKey, VerifyKey

from ..errors import BadSignatureError, UnknownKeyError
from ..textsafe import quote_value
from .canonical import canonical_json
from .keyring import Keyring

__all__ = ["rotation_message", "sign_rotation", "verify_rotation"]

_HEX_SIG = re.compile(r"^[0-9a-f]{128}$")


def rotation_message(key_id: str, public_key: bytes) -> bytes:
    """The bytes an endorsing key signs: canonical JSON of ``{algorithm, key_id, public_key}``."""
    return canonical_json({"algorithm": "ed25519", "key_id": key_id, "public_key": public_key.hex()})


def sign_rotation(endorser_seed: bytes, endorser_id: str, key_id: str, public_key: bytes) -> dict[str, str]:
    """The ``rotation`` member that has ``endorser_id`` (whose private seed is given) endorse ``key_id``."""
    signature = SigningKey(endorser_seed).sign(rotation_message(key_id, public_key)).signature.hex()
    return {"endorsed_by": endorser_id, "signature": signature}


def verify_rotation(keyring: Keyring, key_id: str, public_key: bytes, endorsed_by: str, signature: str) -> None:
    """Raise unless a key already in ``keyring`` (``endorsed_by``) signed this statement about ``key_id``.

    UnknownKeyError if the endorsing key is not trusted (or endorses itself);
    BadSignatureError if the signature is not its signature over this key id and key.
    """
    if endorsed_by == key_id:
        raise UnknownKeyError(f"key {quote_value(key_id)} endorses itself; a rotation needs a key already trusted")
    endorser = keyring.get(endorsed_by)
    if endorser is None:
        raise UnknownKeyError(
            f"key {quote_value(key_id)} is endorsed by {quote_value(endorsed_by)}, which is not in the trusted keyring"
        )
    if not _HEX_SIG.match(signature):
        raise BadSignatureError("rotation signature: expected 128 lower-case hex digits")
    try:
        VerifyKey(endorser).verify(rotation_message(key_id, public_key), bytes.fromhex(signature))
    except (_NaclBadSignature, ValueError):
        raise BadSignatureError(
            f"rotation statement for key {quote_value(key_id)} is not signed by {quote_value(endorsed_by)}"
        ) from None
