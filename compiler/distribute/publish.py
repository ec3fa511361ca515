"""A static site that serves both agents and OPA, from any web server or bucket.

Layout (DESIGN.md section 7)::

    v1/workspaces/<ws>/policies/active   the signed policy.json (what ``policy pull`` and PolicyClient read)
    v1/keys/<key_id>                     {"key_id", "algorithm": "ed25519", "public_key"} for policy signatures
    bundles/<ws>.tar.gz                  the signed OPA bundle (what ``opa-config`` points OPA at)
    discovery.tar.gz                     with ``publish --discovery``: the signed discovery bundle

Every file is written atomically (a file whose bytes did not change is left alone, keeping the ETag
a web server derives from its modification time), bundles first, then the discovery bundle,
policies last, so a reader never sees a policy (or an OPA a discovered
configuration) whose bundle is not there yet. :func:`publish_oci` pushes the
same bundles to an OCI registry, in the same order.
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
from .layout import DISCOVERY_RESOURCE, bundle_resource
from .oci import OCIReference, push_bundle

__all__ = ["Publication", "publish_oci", "publish_site"]


@dataclass(frozen=True)
class Publication:
    """One workspace's verified policy and its (signed) bundle."""

    policy: Policy
    bundle: bytes


def _same(path: Path, data: bytes) -> bool:
    try:
        return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def _segment(value: str) -> str:
    # Ids become single path segments; quote anything that could climb or nest.
    return quote(value, safe="")


def publish_site(
    site: str | os.PathLike[str],
    publications: Iterable[Publication],
    keyring: Keyring,
    *,
    discovery: bytes | None = None,
) -> list[Path]:
    """Write the static tree under ``site`` (with the discovery bundle if given); return the files written."""
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
        # An unchanged file keeps its mtime, and so the ETag nginx or Caddy derive from it: no re-download.
        if not _same(path, data):
            atomic_write(path, data)
        written.append(path)

    for item in items:
        write(bundle_resource(_segment(item.policy.workspace_id)), item.bundle)
    if discovery is not None:
        write(DISCOVERY_RESOURCE, discovery)
    for key_id, public in sorted(keys.items()):
        document = {"key_id": key_id, "algorithm": "ed25519", "public_key": public.hex()}
        write(f"v1/keys/{_segment(key_id)}", (json.dumps(document, indent=2) + "\n").encode())
    for item in items:
        body = json.dumps(item.policy.document, indent=2, ensure_ascii=False) + "\n"
        write(f"v1/workspaces/{_segment(item.policy.workspace_id)}/policies/active", body.encode("utf-8"))
    return written


def publish_oci(
    reference: OCIReference,
    publications: Iterable[Publication],
    *,
    discovery: tuple[bytes, str] | None = None,
    plain_http: bool = False,
) -> list[tuple[str, str]]:
    """Push each workspace's bundle to its repository below ``reference``, then the discovery bundle (bytes and
    revision) to ``reference`` itself; return (reference, manifest digest) for each push."""
    items = list(publications)
    targets = [reference.workspace(item.policy.workspace_id) for item in items]  # every name checked before a push
    pushed: list[tuple[str, str]] = []
    for item, target in zip(items, targets, strict=True):
        name = f"{item.policy.workspace_id}.tar.gz"
        digest = push_bundle(target, item.bundle, revision=item.policy.revision, name=name, plain_http=plain_http)
        pushed.append((target, digest))
    if discovery is not None:
        bundle, revision = discovery
        target = str(reference)
        pushed.append((target, push_bundle(target, bundle, revision=revision, name=DISCOVERY_RESOURCE, plain_http=plain_http)))
    return pushed
