"""OPA configuration for a fleet that pulls sekuire bundles: from a bundle server, an OCI registry, or by discovery.

The result is plain OPA configuration (``opa run --server --config-file opa.yaml``):

- the bundle service (``sekuire``): an HTTP(S) bundle server or static site, an
  S3 bucket (``s3_signing``), or an OCI registry (``type: oci``), with its
  credentials (:mod:`.credentials`);
- either one bundle per workspace (``sekuire-<ws>``), or a ``discovery`` section
  that makes OPA fetch the signed discovery bundle ``publish --discovery``
  wrote and take the workspace bundles from it (:mod:`.discovery`);
- the key that verifies every signature, and ``signing`` on every bundle;
- optionally decision logs (console, the bundle service, or a service of their
  own) and status reports to a service of their own.

Bundles use distinct roots (``sekuire/workspaces/<ws>``), so the fleet's own
bundles can sit beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from ..bundle.keys import check_algorithm
from ..errors import DistributionError
from .credentials import Credentials, service_entry
from .layout import (
    DEFAULT_KEY_ID,
    DEFAULT_SERVICE,
    DISCOVERY_DECISION,
    DISCOVERY_NAME,
    DISCOVERY_RESOURCE,
    Polling,
    bundle_entry,
    bundle_name,
    bundle_resource,
    check_config_algorithm,
)
from .oci import parse_oci_reference

__all__ = [
    "DECISION_LOGS_SERVICE",
    "OPAConfigOptions",
    "STATUS_SERVICE",
    "opa_config",
    "opa_config_yaml",
]

DECISION_LOGS_SERVICE = "sekuire-decision-logs"
STATUS_SERVICE = "sekuire-status"
#: Decision-log uploads every 5-10 s (OPA's default is 300-600 s, too slow to watch an agent's decisions).
_LOG_REPORTING = {"min_delay_seconds": 5, "max_delay_seconds": 10}


@dataclass(frozen=True)
class OPAConfigOptions:
    """What ``sekuire opa-config`` writes; each field is one flag of the command."""

    workspaces: tuple[str, ...] = ()
    service_url: str | None = None
    #: ``REGISTRY/REPOSITORY[:TAG]`` as given to ``publish --oci`` (instead of ``service_url``).
    oci: str | None = None
    #: The registry speaks plain HTTP (a loopback test registry): an explicit choice, never a fallback.
    plain_http: bool = False
    #: Bootstrap config: the workspaces come from the discovery bundle ``publish --discovery`` wrote.
    discovery: bool = False
    verification_key: str | None = None  # PEM public key, or the HMAC secret for HS* algorithms
    signing_alg: str = "RS256"
    key_id: str = DEFAULT_KEY_ID
    scope: str | None = None
    polling: Polling = field(default_factory=Polling)
    persistence_directory: str | None = None
    credentials: Credentials = field(default_factory=Credentials)
    decision_logs: str | None = None  # None, "console" or "service"
    decision_logs_url: str | None = None
    decision_logs_credentials: Credentials = field(default_factory=Credentials)
    status_url: str | None = None
    status_credentials: Credentials = field(default_factory=Credentials)
    service_headers: dict[str, str] = field(default_factory=dict)
    #: Without a verification key OPA activates unsigned bundles: refused unless this is set (an explicit flag).
    allow_unsigned_bundles: bool = False


def _http_url(url: str, flag: str) -> str:
    if url.startswith("s3://"):
        raise DistributionError(
            f"{flag}: OPA fetches S3 over HTTPS: give https://BUCKET.s3.REGION.amazonaws.com[/PREFIX] with --s3-signing"
        )
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1].strip("/")) == 0:
        raise DistributionError(f"{flag}: {url!r} is not an http(s) URL")
    return url


def _bundle_service(options: OPAConfigOptions) -> tuple[dict[str, Any], list[str], str | None]:
    """The bundle service entry, each workspace's resource, and the discovery resource."""
    if (options.service_url is None) == (options.oci is None):
        raise DistributionError("give exactly one of --service-url and --oci")
    if options.oci is not None:
        reference = parse_oci_reference(options.oci)
        if options.credentials.s3_signing:
            raise DistributionError("--s3-signing: an OCI registry is not an S3 bucket")
        url = f"{'http' if options.plain_http else 'https'}://{reference.registry}"
        entry = service_entry(url, options.credentials, oci=True)
        return entry, [reference.workspace(ws) for ws in options.workspaces], str(reference)
    if options.plain_http:
        raise DistributionError("--plain-http is for --oci registries; a --service-url says its own scheme")
    entry = service_entry(_http_url(options.service_url or "", "--service-url"), options.credentials)
    return entry, [bundle_resource(ws) for ws in options.workspaces], DISCOVERY_RESOURCE


def opa_config(options: OPAConfigOptions) -> dict[str, Any]:
    """The OPA configuration document; DistributionError (BundleError for the algorithm) on anything OPA would refuse."""
    if options.discovery and options.workspaces:
        raise DistributionError("--discovery: the workspaces come from the discovery bundle; drop --workspace")
    if not options.discovery and not options.workspaces:
        raise DistributionError("give --workspace (one per workspace) or --discovery")
    polling = options.polling.check()
    check_config_algorithm(check_algorithm(options.signing_alg))
    if options.verification_key is None and not options.allow_unsigned_bundles:
        raise DistributionError(
            "no verification key: OPA would activate unsigned bundles; give --verification-key "
            "(or --allow-unsigned-bundles to write such a config on purpose)"
        )
    service, resources, discovery_resource = _bundle_service(options)
    if options.service_headers:
        service["headers"] = dict(options.service_headers)
    config: dict[str, Any] = {"services": {DEFAULT_SERVICE: service}}
    key_id = options.key_id if options.verification_key is not None else None
    if options.discovery:
        config["discovery"] = {
            "name": DISCOVERY_NAME,
            "service": DEFAULT_SERVICE,
            "resource": discovery_resource,
            "decision": DISCOVERY_DECISION,
            "persist": polling.persist,
            "polling": {"min_delay_seconds": polling.min_delay_seconds, "max_delay_seconds": polling.max_delay_seconds},
        }
        if key_id is not None:
            config["discovery"]["signing"] = {"keyid": key_id, **({"scope": options.scope} if options.scope else {})}
    else:
        config["bundles"] = {
            bundle_name(ws): bundle_entry(resource, polling, key_id=key_id, scope=options.scope)
            for ws, resource in zip(options.workspaces, resources, strict=True)
        }
    if options.verification_key is not None:
        key: dict[str, Any] = {"algorithm": options.signing_alg, "key": options.verification_key}
        if options.scope:
            key["scope"] = options.scope
        config["keys"] = {options.key_id: key}
    _reporting(options, config)
    if options.persistence_directory is not None:
        config["persistence_directory"] = options.persistence_directory
    return config


def _reporting(options: OPAConfigOptions, config: dict[str, Any]) -> None:
    """Decision logs and status: to the console, the bundle service, or services of their own."""
    if options.decision_logs not in (None, "console", "service"):
        raise DistributionError(f"--decision-logs must be 'console' or 'service', not {options.decision_logs!r}")
    if options.decision_logs_url is not None:
        if options.decision_logs == "console":
            raise DistributionError("--decision-logs console and --decision-logs-url: give one")
        url = _http_url(options.decision_logs_url, "--decision-logs-url")
        config["services"][DECISION_LOGS_SERVICE] = service_entry(
            url, options.decision_logs_credentials, flag="--decision-logs-"
        )
        config["decision_logs"] = {"service": DECISION_LOGS_SERVICE, "reporting": dict(_LOG_REPORTING)}
    elif not options.decision_logs_credentials.empty:
        raise DistributionError("--decision-logs-* credentials need --decision-logs-url")
    elif options.decision_logs == "console":
        config["decision_logs"] = {"console": True}
    elif options.decision_logs == "service":
        config["decision_logs"] = {"service": DEFAULT_SERVICE, "reporting": dict(_LOG_REPORTING)}
    if options.status_url is not None:
        url = _http_url(options.status_url, "--status-url")
        config["services"][STATUS_SERVICE] = service_entry(url, options.status_credentials, flag="--status-")
        config["status"] = {"service": STATUS_SERVICE}
    elif not options.status_credentials.empty:
        raise DistributionError("--status-* credentials need --status-url")


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (PEM keys) as literal blocks, the way people write OPA configs."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def opa_config_yaml(options: OPAConfigOptions) -> str:
    """:func:`opa_config` as the YAML ``opa run --config-file`` reads."""
    return yaml.dump(opa_config(options), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
