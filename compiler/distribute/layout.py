"""Names shared by what ``publish`` writes and what ``opa-config`` points OPA at: bundle names, resources, entries.

A workspace's bundle is ``sekuire-<ws>`` to OPA (status, decision logs,
``/health?bundles``) and ``bundles/<ws>.tar.gz`` on a static site; the discovery
bundle is ``discovery.tar.gz`` at the site's top (no workspace id can collide
with it) and its configuration is the value of ``data.sekuire.discovery.config``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import DistributionError
from ..rego.library import check_workspace_id

__all__ = [
    "CONFIG_REFUSED_ALGORITHMS",
    "DEFAULT_KEY_ID",
    "DEFAULT_SERVICE",
    "DISCOVERY_DECISION",
    "DISCOVERY_NAME",
    "DISCOVERY_RESOURCE",
    "DISCOVERY_ROOT",
    "Polling",
    "bundle_entry",
    "bundle_name",
    "bundle_resource",
    "check_config_algorithm",
]

#: OPA's own default key id (``opa run --verification-key-id`` and ``opa build`` use "default").
DEFAULT_KEY_ID = "default"
#: The service every bundle entry names, in the bootstrap config and in the discovered one.
DEFAULT_SERVICE = "sekuire"
#: Algorithms OPA 1.22 verifies for ``opa run --bundle`` files but refuses in its config file's ``keys``
#: ("config error: unsupported algorithm 'EdDSA'"), so no bundle OPA pulls through its config can use them.
CONFIG_REFUSED_ALGORITHMS = frozenset({"EdDSA"})
DISCOVERY_NAME = "sekuire-discovery"
DISCOVERY_RESOURCE = "discovery.tar.gz"
DISCOVERY_ROOT = "sekuire/discovery"
DISCOVERY_DECISION = f"{DISCOVERY_ROOT}/config"


@dataclass(frozen=True)
class Polling:
    """How often OPA asks for a new bundle (OPA's defaults: 60-120 s); ``persist`` keeps the last one on disk."""

    min_delay_seconds: int = 60
    max_delay_seconds: int = 120
    persist: bool = False

    def check(self) -> Polling:
        if self.min_delay_seconds <= 0 or self.max_delay_seconds < self.min_delay_seconds:
            raise DistributionError(
                f"--polling-min {self.min_delay_seconds} / --polling-max {self.max_delay_seconds}: "
                "need 0 < min <= max seconds"
            )
        return self


def check_config_algorithm(alg: str, flag: str = "--signing-alg") -> str:
    """``alg`` if an OPA that pulls bundles through its config can verify it; DistributionError otherwise."""
    if alg in CONFIG_REFUSED_ALGORITHMS:
        raise DistributionError(
            f"{flag} {alg}: OPA 1.22 verifies {alg} only for `opa run --bundle` files; its config refuses the key, "
            "so an OPA that pulls bundles cannot verify them: use RS256, PS256 or ES256"
        )
    return alg


def bundle_name(workspace_id: str) -> str:
    """The name OPA knows a workspace's bundle by (in its status, decision logs and ``/health?bundles``)."""
    return f"sekuire-{check_workspace_id(workspace_id)}"


def bundle_resource(workspace_id: str) -> str:
    """Where a workspace's bundle lives on the bundle server (the layout ``sekuire publish`` writes)."""
    return f"bundles/{check_workspace_id(workspace_id)}.tar.gz"


def bundle_entry(resource: str, polling: Polling, *, key_id: str | None, scope: str | None = None) -> dict[str, Any]:
    """One ``bundles.<name>`` entry; with ``key_id`` OPA refuses the bundle unless that key's signature verifies."""
    entry: dict[str, Any] = {
        "service": DEFAULT_SERVICE,
        "resource": resource,
        "persist": polling.persist,
        "polling": {"min_delay_seconds": polling.min_delay_seconds, "max_delay_seconds": polling.max_delay_seconds},
    }
    if key_id is not None:
        signing: dict[str, Any] = {"keyid": key_id}
        if scope:
            signing["scope"] = scope
        entry["signing"] = signing
    return entry
