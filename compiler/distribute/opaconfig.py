"""OPA configuration for a fleet that pulls sekuire bundles from a bundle server or a static site.

The result is plain OPA configuration (``opa run --server --config-file opa.yaml``):
one service, one bundle resource per workspace (``bundles/<ws>.tar.gz``, the
layout ``sekuire publish`` writes), the public key that verifies the bundle
signatures, and optionally decision logs. Bundles use distinct roots
(``sekuire/workspaces/<ws>``), so the fleet's own bundles can sit beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from ..bundle.keys import check_algorithm
from ..errors import CompileError
from ..rego.library import bundle_name, check_workspace_id

__all__ = ["DEFAULT_KEY_ID", "DEFAULT_SERVICE", "OPAConfigOptions", "bundle_name", "bundle_resource", "opa_config", "opa_config_yaml"]

#: OPA's own default key id (``opa run --verification-key-id`` and ``opa build`` use "default").
DEFAULT_KEY_ID = "default"
DEFAULT_SERVICE = "sekuire"
_ASYMMETRIC = ("RS", "PS", "ES")


@dataclass(frozen=True)
class OPAConfigOptions:
    """What ``sekuire opa-config`` writes: the service, the workspaces, how OPA verifies and polls their bundles."""

    service_url: str
    workspaces: tuple[str, ...]
    verification_key: str | None = None  # PEM public key, or the HMAC secret for HS* algorithms
    signing_alg: str = "RS256"
    key_id: str = DEFAULT_KEY_ID
    scope: str | None = None
    min_delay_seconds: int = 60
    max_delay_seconds: int = 120
    decision_logs: str | None = None  # None, "console" or "service"
    service_headers: dict[str, str] = field(default_factory=dict)
    #: Without a verification key OPA activates unsigned bundles: refused unless this is set (an explicit flag).
    allow_unsigned_bundles: bool = False


def bundle_resource(workspace_id: str) -> str:
    """Where a workspace's bundle lives on the bundle server (the layout ``sekuire publish`` writes)."""
    return f"bundles/{check_workspace_id(workspace_id)}.tar.gz"


def opa_config(options: OPAConfigOptions) -> dict[str, Any]:
    """The OPA configuration document; CompileError (or BundleError for the algorithm) on anything OPA would refuse."""
    if not options.workspaces:
        raise CompileError("at least one workspace is needed")
    if not options.service_url.startswith(("http://", "https://")):
        raise CompileError(f"service URL must be http(s): {options.service_url!r}")
    if options.min_delay_seconds <= 0 or options.max_delay_seconds < options.min_delay_seconds:
        raise CompileError("polling delays must satisfy 0 < min <= max")
    check_algorithm(options.signing_alg)
    if options.verification_key is None and not options.allow_unsigned_bundles:
        raise CompileError(
            "no verification key: OPA would activate unsigned bundles; give --verification-key "
            "(or --allow-unsigned-bundles to write such a config on purpose)"
        )
    service: dict[str, Any] = {"url": options.service_url.rstrip("/")}
    if options.service_headers:
        service["headers"] = dict(options.service_headers)
    config: dict[str, Any] = {"services": {DEFAULT_SERVICE: service}, "bundles": {}}
    for ws in options.workspaces:
        bundle: dict[str, Any] = {
            "service": DEFAULT_SERVICE,
            "resource": bundle_resource(ws),
            "persist": False,
            "polling": {
                "min_delay_seconds": options.min_delay_seconds,
                "max_delay_seconds": options.max_delay_seconds,
            },
        }
        if options.verification_key is not None:
            signing: dict[str, Any] = {"keyid": options.key_id}
            if options.scope:
                signing["scope"] = options.scope
            bundle["signing"] = signing
        config["bundles"][bundle_name(ws)] = bundle
    if options.verification_key is not None:
        config["keys"] = {options.key_id: {"algorithm": options.signing_alg, "key": options.verification_key}}
        if options.scope:
            config["keys"][options.key_id]["scope"] = options.scope
    if options.decision_logs == "console":
        config["decision_logs"] = {"console": True}
    elif options.decision_logs == "service":
        config["decision_logs"] = {"service": DEFAULT_SERVICE, "reporting": {"min_delay_seconds": 5, "max_delay_seconds": 10}}
    elif options.decision_logs is not None:
        raise CompileError(f"decision logs must be 'console' or 'service', not {options.decision_logs!r}")
    return config


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (PEM keys) as literal blocks, the way people write OPA configs."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def opa_config_yaml(options: OPAConfigOptions) -> str:
    """:func:`opa_config` as the YAML ``opa run --config-file`` reads."""
    return yaml.dump(opa_config(options), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
