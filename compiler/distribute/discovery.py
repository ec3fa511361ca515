"""OPA discovery for a fleet: a signed discovery bundle naming every workspace bundle of the site, and its bootstrap.

``sekuire publish --discovery`` writes ``discovery/sekuire.tar.gz`` beside the
workspace bundles: a bundle whose data, under ``sekuire/discovery``, is the
part of OPA's configuration that changes as workspaces come and go (one
``bundles`` entry per ``bundles/<ws>.tar.gz`` in the site, each verified with
the signing key id). ``sekuire opa-config --discovery`` writes the small
bootstrap every OPA of the fleet starts with: the service, the verification
key, and where to find and how to verify the discovery bundle. Adding a
workspace is then a publish: every OPA picks it up on its next discovery poll.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ..bundle.tarball import FileSigner, build_bundle
from ..errors import CompileError
from ..files import atomic_write
from ..rego.library import bundle_name, check_workspace_id
from .opaconfig import DEFAULT_SERVICE, DISCOVERY_DECISION, DISCOVERY_RESOURCE, bundle_resource

__all__ = ["discovered_config", "site_workspaces", "write_discovery"]


@dataclass(frozen=True)
class _Source:
    data: Mapping[str, Any]
    manifest: Mapping[str, Any]
    modules: Mapping[str, str] = field(default_factory=dict)


def discovered_config(workspaces: list[str], key_id: str | None, *, min_delay: int = 60, max_delay: int = 120) -> dict[str, Any]:
    """The configuration OPA discovers: one verified bundle per workspace, from the bootstrap's service."""
    bundles: dict[str, Any] = {}
    for ws in sorted(workspaces):
        entry: dict[str, Any] = {
            "service": DEFAULT_SERVICE,
            "resource": bundle_resource(ws),
            "persist": False,
            "polling": {"min_delay_seconds": min_delay, "max_delay_seconds": max_delay},
        }
        if key_id is not None:
            entry["signing"] = {"keyid": key_id}
        bundles[bundle_name(ws)] = entry
    return {"bundles": bundles}


def site_workspaces(site: str | os.PathLike[str]) -> list[str]:
    """The workspaces whose bundles the site holds (``bundles/<ws>.tar.gz``)."""
    folder = Path(site) / "bundles"
    names = [unquote(path.name.removesuffix(".tar.gz")) for path in folder.glob("*.tar.gz")] if folder.is_dir() else []
    return sorted(check_workspace_id(name) for name in names)


def write_discovery(site: str | os.PathLike[str], signer: FileSigner | None, key_id: str | None, *,
                    min_delay: int = 60, max_delay: int = 120) -> Path:
    """Write the site's discovery bundle (signed with ``signer``) naming every workspace bundle in it."""
    if min_delay <= 0 or max_delay < min_delay:
        raise CompileError("polling delays must satisfy 0 < min <= max")
    config = discovered_config(site_workspaces(site), key_id, min_delay=min_delay, max_delay=max_delay)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    data: dict[str, Any] = config
    for segment in reversed(DISCOVERY_DECISION.split("/")):
        data = {segment: data}
    manifest = {"revision": f"sekuire-discovery-{digest}", "roots": [DISCOVERY_DECISION], "rego_version": 1}
    bundle = build_bundle(_Source(data=data, manifest=manifest), signer=signer)
    path = Path(site) / DISCOVERY_RESOURCE
    if not (path.is_file() and path.read_bytes() == bundle):  # unchanged: keep the host's ETag
        atomic_write(path, bundle)
    return path
