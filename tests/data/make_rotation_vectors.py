"""Write tests/data/rotation-vectors.json: key-rotation statements from fixed test seeds (docs/trust.md).

``python -m tests.data.make_rotation_vectors`` regenerates the file; the test
``tests/test_trust.py`` checks that it is current and that each vector verifies
(or fails) as it says. The seeds are test-only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey
from sekuire.compiler.policy.keyring import fingerprint
from sekuire.compiler.policy.rotation import rotation_message, sign_rotation

TARGET = Path(__file__).with_name("rotation-vectors.json")
OLD_SEED, NEW_SEED, OTHER_SEED = bytes([1] * 32), bytes([2] * 32), bytes([3] * 32)


def _public(seed: bytes) -> bytes:
    return SigningKey(seed).verify_key.encode()


def vectors() -> dict[str, Any]:
    """The vector document: the trusted key, and statements that must verify or must fail."""
    new_public = _public(NEW_SEED)
    good = sign_rotation(OLD_SEED, "key_old", "key_new", new_public)
    forged = sign_rotation(OTHER_SEED, "key_old", "key_new", new_public)  # claims key_old, signed by another key
    return {
        "trusted": {"key_id": "key_old", "public_key": _public(OLD_SEED).hex(), "private_seed_hex": OLD_SEED.hex()},
        "statements": [
            {"name": "endorsed", "valid": True, "key_id": "key_new", "public_key": new_public.hex(),
             "fingerprint": fingerprint(new_public), "message": rotation_message("key_new", new_public).decode(),
             "rotation": good},
            {"name": "other key id", "valid": False, "key_id": "key_evil", "public_key": new_public.hex(),
             "rotation": good},
            {"name": "other public key", "valid": False, "key_id": "key_new", "public_key": _public(OTHER_SEED).hex(),
             "rotation": good},
            {"name": "forged endorsement", "valid": False, "key_id": "key_new", "public_key": new_public.hex(),
             "rotation": forged},
            {"name": "untrusted endorser", "valid": False, "key_id": "key_new", "public_key": new_public.hex(),
             "rotation": {**good, "endorsed_by": "key_unknown"}},
            {"name": "self endorsement", "valid": False, "key_id": "key_old", "public_key": _public(OLD_SEED).hex(),
             "rotation": sign_rotation(OLD_SEED, "key_old", "key_old", _public(OLD_SEED))},
        ],
    }


def render() -> str:
    """The file's exact text."""
    return json.dumps(vectors(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render(), encoding="utf-8")
