"""``sekuire opa-config``: the OPA configuration that pulls, verifies and reports on workspace bundles."""

from __future__ import annotations

import argparse
import sys

from ..distribute.credentials import Credentials
from ..distribute.layout import DEFAULT_KEY_ID, Polling
from ..distribute.opaconfig import OPAConfigOptions, opa_config_yaml
from ..errors import SekuireError
from ..files import atomic_write, read_limited

__all__ = ["add_polling_options", "add_unsigned_option", "register", "warn_unsigned"]


def add_unsigned_option(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--allow-unsigned-bundles", action="store_true", help=text)


def warn_unsigned(what: str) -> None:
    print(f"warning: {what}: bundles are NOT signed; accepted only because of --allow-unsigned-bundles", file=sys.stderr)


def add_polling_options(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_argument_group("polling", f"how OPA polls {what}")
    group.add_argument("--polling-min", type=int, default=60, metavar="SECONDS", help="at least this long between polls (default: 60)")
    group.add_argument("--polling-max", type=int, default=120, metavar="SECONDS", help="at most this long (default: 120)")
    group.add_argument("--persist", action="store_true", help="OPA keeps the last activated bundle on disk and starts from it")


def _add_credentials(parser: argparse.ArgumentParser, prefix: str, service: str, *, bundle_service: bool = False) -> None:
    group = parser.add_argument_group(f"{service} credentials", "paths and variable names only: no secret enters the config")
    group.add_argument(
        f"--{prefix}bearer-token-file", metavar="FILE", help=f"OPA sends the token in FILE (re-read per request) to the {service}"
    )
    group.add_argument(
        f"--{prefix}bearer-token-env", metavar="VAR", help="OPA sends the token in environment variable VAR (written as ${VAR})"
    )
    group.add_argument(f"--{prefix}client-cert", metavar="FILE", help=f"PEM client certificate OPA presents to the {service} (mTLS)")
    group.add_argument(f"--{prefix}client-key", metavar="FILE", help="PEM private key of --client-cert")
    group.add_argument(f"--{prefix}ca-cert", metavar="FILE", help=f"PEM CA certificate that verifies the {service}'s TLS certificate")
    if bundle_service:
        group.add_argument(
            "--bearer-scheme", default="Bearer", metavar="SCHEME", help="scheme of the token (default: Bearer; Basic for user:pass)"
        )
        group.add_argument("--s3-signing", action="store_true", help="sign requests with AWS SigV4 from OPA's AWS_* environment")


def _credentials(args: argparse.Namespace, prefix: str) -> Credentials:
    def get(name: str) -> str | None:
        value = getattr(args, f"{prefix}{name}")
        return value if value is None else str(value)

    return Credentials(
        bearer_token_file=get("bearer_token_file"),
        bearer_token_env=get("bearer_token_env"),
        bearer_scheme=getattr(args, "bearer_scheme", "Bearer") if prefix == "" else "Bearer",
        client_cert=get("client_cert"),
        client_key=get("client_key"),
        ca_cert=get("ca_cert"),
        s3_signing=bool(getattr(args, "s3_signing", False)) if prefix == "" else False,
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser("opa-config", help="write an OPA config that pulls and verifies workspace bundles")
    where = config.add_argument_group("where the bundles are (one of)")
    where.add_argument("--service-url", metavar="URL", help="the bundle server, static site or S3 bucket `sekuire publish --site` fills")
    where.add_argument("--oci", metavar="REGISTRY/REPOSITORY[:TAG]", help="the OCI registry `sekuire publish --oci` pushed to")
    where.add_argument("--plain-http", action="store_true", help="the --oci registry speaks plain HTTP (loopback tests only)")
    which = config.add_argument_group("which bundles (one of)")
    which.add_argument("--workspace", action="append", default=[], metavar="ID", help="repeat for several workspaces")
    which.add_argument("--discovery", action="store_true", help="a bootstrap config: OPA takes the workspaces from the discovery bundle")
    trust = config.add_argument_group("signatures")
    trust.add_argument("--verification-key", metavar="FILE", help="PEM public key that verifies the bundle signatures")
    trust.add_argument("--verification-key-id", default=DEFAULT_KEY_ID, metavar="ID", help="default: default")
    trust.add_argument("--signing-alg", default="RS256", help="default: RS256")
    trust.add_argument("--scope", help="scope the bundle signatures must carry")
    add_polling_options(config, "the bundles (or the discovery bundle)")
    config.add_argument("--persistence-directory", metavar="DIR", help="where OPA persists bundles (OPA's default: .opa)")
    _add_credentials(config, "", "bundle service", bundle_service=True)
    logs = config.add_argument_group("decision logs and status")
    logs.add_argument("--decision-logs", choices=("console", "service"), help="log decisions to the console or the bundle service")
    logs.add_argument("--decision-logs-url", metavar="URL", help="upload decision logs to this service (OPA's decision log API)")
    logs.add_argument("--status-url", metavar="URL", help="report bundle and plugin status to this service (OPA's status API)")
    _add_credentials(config, "decision-logs-", "decision-log service")
    _add_credentials(config, "status-", "status service")
    config.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    add_unsigned_option(config, "write a config without a signing block: OPA then activates UNSIGNED bundles (unsafe)")
    config.set_defaults(handler=_opa_config)


def _opa_config(args: argparse.Namespace) -> int:
    key = None
    if args.verification_key:
        try:
            key = read_limited(args.verification_key, 1 << 20).decode()
        except (OSError, UnicodeDecodeError) as exc:
            raise SekuireError(getattr(exc, "strerror", None) or str(exc), source=args.verification_key) from None
    text = opa_config_yaml(
        OPAConfigOptions(
            workspaces=tuple(args.workspace),
            service_url=args.service_url,
            oci=args.oci,
            plain_http=args.plain_http,
            discovery=args.discovery,
            verification_key=key,
            signing_alg=args.signing_alg,
            key_id=args.verification_key_id,
            scope=args.scope,
            polling=Polling(args.polling_min, args.polling_max, persist=args.persist),
            persistence_directory=args.persistence_directory,
            credentials=_credentials(args, ""),
            decision_logs=args.decision_logs,
            decision_logs_url=args.decision_logs_url,
            decision_logs_credentials=_credentials(args, "decision_logs_"),
            status_url=args.status_url,
            status_credentials=_credentials(args, "status_"),
            allow_unsigned_bundles=args.allow_unsigned_bundles,
        )
    )
    if key is None:
        warn_unsigned("opa-config: the config has no signing block")
    if args.out:
        atomic_write(args.out, text.encode())
        what = "a discovery bootstrap" if args.discovery else f"{len(args.workspace)} workspace(s)"
        print(f"Wrote OPA config for {what} to {args.out}")
    else:
        sys.stdout.write(text)
    return 0
