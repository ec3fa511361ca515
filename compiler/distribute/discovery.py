"""The discovery bundle: one signed bundle whose data is the OPA configuration naming every workspace bundle.

OPA's discovery plugin downloads it, verifies its signature with the key of
the bootstrap config, evaluates ``data.sekuire.discovery.config`` and applies
the result: a ``bundles`` entry per workspace (``sekuire-<ws>``), each naming
the bootstrap's ``sekuire`` service and requiring that key's signature. The
discovered configuration carries no keys and no services: the trust anchor and
the credentials stay in the bootstrap file (``opa-config --discovery``), which
discovery cannot change, so a fleet's OPAs need only that one small file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..bundle.tarball import FileSigner, build_bundle
from ..policy.canonical import canonical_json
from ..version import __version__
from .layout import DISCOVERY_ROOT, Polling, bundle_entry, bundle_name

__all__ = ["DiscoveryBundle", "build_discovery_bundle", "discovery_config"]


def discovery_config(
    resources: Mapping[str, str], polling: Polling, *, key_id: str | None, scope: str | None = None
) -> dict[str, Any]:
    """The configuration OPA derives: ``resources`` maps each workspace id to where its bundle lives."""
    return {
        "bundles": {
            bundle_name(ws): bundle_entry(resource, polling, key_id=key_id, scope=scope)
            for ws, resource in sorted(resources.items())
        }
    }


@dataclass(frozen=True)
class DiscoveryBundle:
    """The bundle's parts (what :func:`~sekuire.compiler.bundle.tarball.build_bundle` takes)."""

    config: dict[str, Any]
    modules: dict[str, str] = field(default_factory=dict)

    @property
    def revision(self) -> str:
        """``discovery-<first 16 hex of the SHA-256 of the canonical config>``: changes exactly when the config does."""
        return "discovery-" + hashlib.sha256(canonical_json(self.config)).hexdigest()[:16]

    @property
    def data(self) -> dict[str, Any]:
        return {"sekuire": {"discovery": {"config": self.config}}}

    @property
    def manifest(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "roots": [DISCOVERY_ROOT],
            "rego_version": 1,
            "metadata": {"compiler_version": __version__},
        }


def build_discovery_bundle(
    resources: Mapping[str, str], polling: Polling, *, signer: FileSigner | None, key_id: str | None, scope: str | None = None
) -> tuple[bytes, str]:
    """The discovery bundle (signed by ``signer`` if given) and its revision."""
    bundle = DiscoveryBundle(config=discovery_config(resources, polling, key_id=key_id, scope=scope))
    return build_bundle(bundle, signer=signer), bundle.revision
