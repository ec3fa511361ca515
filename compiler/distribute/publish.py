"""A static site that serves both agents and OPA, from any web server or bucket.

Layout (DESIGN.md section 7)::

    v1/workspaces/<ws>/policies/active   the signed policy.json (what ``policy pull`` and PolicyClient read)
    v1/keys/<key_id>                     {"key_id", "algorithm": "ed25519", "public_key"} for policy signatures
    bundles/<ws>.tar.gz                  the signed OPA bundle (what ``opa-config`` points OPA at)

Every file is written atomically, bundles first and policies last, so a reader
never sees a policy whose bundle is not there yet.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ..errors import KeyringError
from ..files import atomic_write
from ..policy.document import Policy
from ..policy.keyring import Keyring
from .opaconfig import bundle_resource

__all__ = ["Publication", "publish_site"]


@dataclass(frozen=True)
class Publication:
    policy: Policy
    bundle: bytes


def _segment(value: str) -> str:
    # Ids become single path segments; quote anything that could climb or nest.
    return quote(value, safe="")


def publish_site(site: str | os.PathLike[str], publications: Iterable[Publication], keyring: Keyring) -> list[Path]:
    """Write the static tree under ``site`` (files whose content is unchanged keep their mtime); return its files."""
    root = Path(site)
    items = list(publications)
    keys: dict[str, bytes] = {}
    for item in items:
        key_id = item.policy.signing_key_id
        if item.policy.signature_status == "verified" and key_id:
            public = keyring.get(key_id)
            if public is None:
                raise KeyringError(f"key {key_id!r} that signed {item.policy.policy_id} is not in the keyring")
            keys[key_id] = public
    written: list[Path] = []

    def write(relative: str, data: bytes) -> None:
        path = root / relative
        # An unchanged file is left alone: hosts that derive ETags from size and mtime keep them, so OPA's
        # If-None-Match polls get 304 (no download, no re-activation).
        if not (path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data):
            atomic_write(path, data)
        written.append(path)

    for item in items:
        write(bundle_resource(_segment(item.policy.workspace_id)), item.bundle)
    for key_id, public in sorted(keys.items()):
        document = {"key_id": key_id, "algorithm": "ed25519", "public_key": public.hex()}
        write(f"v1/keys/{_segment(key_id)}", (json.dumps(document, indent=2) + "\n").encode())
    for item in items:
        body = json.dumps(item.policy.document, indent=2, ensure_ascii=False) + "\n"
        write(f"v1/workspaces/{_segment(item.policy.workspace_id)}/policies/active", body.encode("utf-8"))
    return written
