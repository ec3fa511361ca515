"""OPA configuration for a fleet that pulls sekuire bundles from a bundle server or a static site.

The result is plain OPA configuration (``opa run --server --config-file opa.yaml``):
one service (with credentials: :mod:`.credentials`), one bundle resource per
workspace (``bundles/<ws>.tar.gz``, the layout ``sekuire publish`` writes), the
public key that verifies the bundle signatures, and optionally decision logs and
status reports (to that service or to their own), persistence and long polling. Bundles use distinct roots
(``sekuire/workspaces/<ws>``), so the fleet's own bundles can sit beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from ..bundle.keys import check_algorithm
from ..errors import CompileError
from ..version import OPA_VERSION
from ..rego.library import bundle_name, check_workspace_id
from .credentials import Credentials, service
from .oci import OCIReference

__all__ = [
    "CONFIG_REFUSES",
    "DEFAULT_KEY_ID",
    "DEFAULT_SERVICE",
    "DISCOVERY_DECISION",
    "DISCOVERY_RESOURCE",
    "LOGS_SERVICE",
    "OPAConfigOptions",
    "STATUS_SERVICE",
    "bundle_name",
    "bundle_resource",
    "opa_config",
    "opa_config_yaml",
]

#: OPA's own default key id (``opa run --verification-key-id`` and ``opa build`` use "default").
DEFAULT_KEY_ID = "default"
DEFAULT_SERVICE = "sekuire"
#: Where ``publish --discovery`` puts the discovery bundle in the site, and the data path OPA evaluates in it.
DISCOVERY_RESOURCE = "discovery/sekuire.tar.gz"
DISCOVERY_DECISION = "sekuire/discovery"
#: Bundle-signing algorithms OPA verifies from the command line but not from its config (``unsupported algorithm``).
CONFIG_REFUSES = frozenset({"EdDSA"})
#: The services of --decision-logs-url and --status-url.
LOGS_SERVICE = "sekuire-logs"
STATUS_SERVICE = "sekuire-status"
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
    #: How OPA authenticates to the bundle service (and, unless they have their own, the log and status services).
    credentials: Credentials | None = None
    #: A separate service for decision logs (implies decision_logs="service") and one for status reports.
    decision_logs_url: str | None = None
    status_url: str | None = None
    #: OPA keeps the last activated bundles on disk and starts from them when the service is down.
    persist: bool = False
    persistence_directory: str | None = None
    #: Long polling: OPA holds a request open this long, the server answers when the bundle changes.
    long_polling_timeout_seconds: int | None = None
    #: A bootstrap config: the bundles come from the site's discovery bundle (``publish --discovery``), not from here.
    discovery: bool = False
    #: Pull the bundles from an OCI registry (``REGISTRY/REPOSITORY[:TAG]``, as ``publish --oci`` pushed them);
    #: ``oci_plain_http`` for a registry without TLS (a loopback test registry).
    oci: str | None = None
    oci_plain_http: bool = False


def bundle_resource(workspace_id: str) -> str:
    """Where a workspace's bundle lives on the bundle server (the layout ``sekuire publish`` writes)."""
    return f"bundles/{check_workspace_id(workspace_id)}.tar.gz"


def opa_config(options: OPAConfigOptions) -> dict[str, Any]:
    """The OPA configuration document; CompileError (or BundleError for the algorithm) on anything OPA would refuse."""
    if not options.workspaces and not options.discovery:
        raise CompileError("at least one workspace is needed (or --discovery)")
    if options.min_delay_seconds <= 0 or options.max_delay_seconds < options.min_delay_seconds:
        raise CompileError("polling delays must satisfy 0 < min <= max")
    check_algorithm(options.signing_alg)
    if options.signing_alg in CONFIG_REFUSES:
        raise CompileError(
            f"--signing-alg {options.signing_alg}: OPA {OPA_VERSION} verifies such bundles with `opa run "
            "--verification-key`, but its configuration's keys refuse the algorithm (OPA would not start); "
            "sign a config-driven fleet's bundles with RS256, PS256 or ES256"
        )
    if options.verification_key is None and not options.allow_unsigned_bundles:
        raise CompileError(
            "no verification key: OPA would activate unsigned bundles; give --verification-key "
            "(or --allow-unsigned-bundles to write such a config on purpose)"
        )
    if options.long_polling_timeout_seconds is not None and options.long_polling_timeout_seconds <= 0:
        raise CompileError("--long-polling must be a positive number of seconds")
    oci = OCIReference.parse(options.oci) if options.oci else None
    if oci is not None and options.discovery:
        raise CompileError("--oci and --discovery cannot be combined")
    bundle_service = service(
        f"{'http' if options.oci_plain_http else 'https'}://{oci.registry}" if oci else options.service_url,
        options.credentials, options.service_headers,
    )
    if oci is not None:
        bundle_service["type"] = "oci"
    config: dict[str, Any] = {"services": {DEFAULT_SERVICE: bundle_service}, "bundles": {}}
    polling: dict[str, Any] = {
        "min_delay_seconds": options.min_delay_seconds,
        "max_delay_seconds": options.max_delay_seconds,
    }
    if options.long_polling_timeout_seconds is not None:
        polling["long_polling_timeout_seconds"] = options.long_polling_timeout_seconds
    if options.discovery:
        config["discovery"] = {"service": DEFAULT_SERVICE, "resource": DISCOVERY_RESOURCE, "decision": DISCOVERY_DECISION,
                               "polling": dict(polling)}
        if options.verification_key is not None:
            config["discovery"]["signing"] = {"keyid": options.key_id}
    for ws in () if options.discovery else options.workspaces:
        bundle: dict[str, Any] = {
            "service": DEFAULT_SERVICE,
            "resource": oci.for_workspace(ws) if oci else bundle_resource(ws),
            "persist": options.persist,
            "polling": dict(polling),
        }
        if options.verification_key is not None:
            signing: dict[str, Any] = {"keyid": options.key_id}
            if options.scope:
                signing["scope"] = options.scope
            bundle["signing"] = signing
        config["bundles"][bundle_name(ws)] = bundle
    if options.discovery:
        del config["bundles"]  # they come from the discovery bundle
    if options.verification_key is not None:
        config["keys"] = {options.key_id: {"algorithm": options.signing_alg, "key": options.verification_key}}
        if options.scope:
            config["keys"][options.key_id]["scope"] = options.scope
    logs = options.decision_logs or ("service" if options.decision_logs_url else None)
    if options.decision_logs_url:
        if options.decision_logs == "console":
            raise CompileError("--decision-logs console and --decision-logs-url cannot be combined")
        config["services"][LOGS_SERVICE] = service(options.decision_logs_url, options.credentials)
    if logs == "console":
        config["decision_logs"] = {"console": True}
    elif logs == "service":
        target = LOGS_SERVICE if options.decision_logs_url else DEFAULT_SERVICE
        config["decision_logs"] = {"service": target, "reporting": {"min_delay_seconds": 5, "max_delay_seconds": 10}}
    elif logs is not None:
        raise CompileError(f"decision logs must be 'console' or 'service', not {logs!r}")
    if options.status_url:
        config["services"][STATUS_SERVICE] = service(options.status_url, options.credentials)
        config["status"] = {"service": STATUS_SERVICE}
    if options.persistence_directory:
        if not options.persist:
            raise CompileError("--persistence-dir needs --persist")
        config["persistence_directory"] = options.persistence_directory
    return config


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (PEM keys) as literal blocks, the way people write OPA configs."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def opa_config_yaml(options: OPAConfigOptions) -> str:
    """:func:`opa_config` as the YAML ``opa run --config-file`` reads."""
    return yaml.dump(opa_config(options), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
