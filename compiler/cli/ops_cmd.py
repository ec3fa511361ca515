"""``sekuire opa-config`` and ``sekuire publish``: plug the bundles into existing OPA infrastructure."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..bundle.tarball import build_bundle
from ..distribute.credentials import Credentials
from ..distribute.opaconfig import DEFAULT_KEY_ID, OPAConfigOptions, opa_config_yaml
from ..distribute.publish import Publication, publish_site
from ..errors import SekuireError
from ..files import atomic_write, read_limited
from ..rego.compile import compile_policy
from .compile_cmd import add_signing_options, signer_from
from .options import add_verify_options, keyring_from, policy_from

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser("opa-config", help="write an OPA config that pulls and verifies workspace bundles")
    config.add_argument("--service-url", metavar="URL", help="where `sekuire publish` output is served (or give --oci)")
    _add_oci_options(config, "pull the bundles from this OCI registry repository (as publish --oci pushed them)")
    config.add_argument("--workspace", action="append", default=[], metavar="ID", help="repeat for several workspaces")
    config.add_argument("--discovery", action="store_true",
                        help="a bootstrap config: the workspaces come from the site's discovery bundle (publish --discovery)")
    config.add_argument("--verification-key", metavar="FILE", help="PEM public key that verifies the bundle signatures")
    config.add_argument("--verification-key-id", default=DEFAULT_KEY_ID, metavar="ID", help="default: default")
    config.add_argument("--signing-alg", default="RS256", help="default: RS256")
    config.add_argument("--scope", help="scope the bundle signatures must carry")
    config.add_argument("--polling-min", type=int, default=60, metavar="SECONDS", help="OPA polls at least this often (default: 60)")
    config.add_argument("--polling-max", type=int, default=120, metavar="SECONDS", help="and at most this often (default: 120)")
    config.add_argument("--decision-logs", choices=("console", "service"), help="also configure OPA decision logs")
    config.add_argument("--decision-logs-url", metavar="URL", help="send decision logs to this service (not the bundle host)")
    config.add_argument("--status-url", metavar="URL", help="send OPA's status reports to this service")
    config.add_argument("--long-polling", type=int, metavar="SECONDS", help="long-polling timeout (bundle servers that support it)")
    config.add_argument("--persist", action="store_true", help="OPA keeps activated bundles on disk and starts from them")
    config.add_argument("--persistence-dir", metavar="DIR", help="where OPA persists bundles (with --persist)")
    creds = config.add_argument_group("credentials (one type; OPA reads the secrets, the config holds none)")
    creds.add_argument("--bearer-token-file", metavar="FILE", help="a file holding the bearer token (re-read by OPA)")
    creds.add_argument("--bearer-token-env", metavar="VAR", help="an environment variable holding the bearer token")
    creds.add_argument("--client-cert", metavar="FILE", help="PEM client certificate for mTLS (with --client-key)")
    creds.add_argument("--client-key", metavar="FILE", help="PEM private key of --client-cert")
    creds.add_argument("--ca-cert", metavar="FILE", help="PEM CA certificate the services' TLS certificates chain to")
    creds.add_argument("--s3-signing", action="store_true",
                       help="sign requests with AWS SigV4 from the environment (AWS_ACCESS_KEY_ID, ...)")
    config.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    _add_unsigned_option(config, "write a config without a signing block: OPA then activates UNSIGNED bundles (unsafe)")
    config.set_defaults(handler=_opa_config)

    publish = sub.add_parser("publish", help="write a static site serving policies, keys and bundles")
    publish.add_argument("--site", metavar="DIR", help="the directory to write the static site into")
    _add_oci_options(publish, "also push each workspace's signed bundle to REGISTRY/REPOSITORY/<ws>:TAG")
    publish.add_argument("--file", required=True, action="append", metavar="FILE", help="policy.json; repeat for several")
    publish.add_argument("--discovery", action="store_true",
                         help="also write a signed discovery bundle naming every workspace bundle of the site")
    publish.add_argument("--polling-min", type=int, default=60, metavar="SECONDS",
                         help="with --discovery: how often OPA polls the workspace bundles, at least (default: 60)")
    publish.add_argument("--polling-max", type=int, default=120, metavar="SECONDS", help="and at most (default: 120)")
    add_signing_options(publish)
    add_verify_options(publish)
    _add_unsigned_option(publish, "publish bundles without --signing-key: UNSIGNED bundles anyone can alter (unsafe)")
    publish.set_defaults(handler=_publish)


def _add_oci_options(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--oci", metavar="REGISTRY/REPOSITORY[:TAG]", help=text)
    parser.add_argument("--oci-plain-http", action="store_true",
                        help="talk to the registry without TLS (a loopback test registry; unsafe elsewhere)")


def _service_url(args: argparse.Namespace) -> str:
    if args.service_url is None and args.oci is None:
        raise SekuireError("give --service-url (a bundle server) or --oci (a registry)")
    return args.service_url or ""


def _absolute(path: str | None) -> str | None:
    """A path as OPA will read it, whatever directory it is started from."""
    return str(Path(path).absolute()) if path else None


def _add_unsigned_option(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--allow-unsigned-bundles", action="store_true", help=text)


def _warn_unsigned(what: str) -> None:
    print(f"warning: {what}: bundles are NOT signed; accepted only because of --allow-unsigned-bundles", file=sys.stderr)


def _opa_config(args: argparse.Namespace) -> int:
    key = None
    if args.verification_key:
        try:
            key = read_limited(args.verification_key, 1 << 20).decode()
        except (OSError, UnicodeDecodeError) as exc:
            raise SekuireError(getattr(exc, "strerror", None) or str(exc), source=args.verification_key) from None
    text = opa_config_yaml(
        OPAConfigOptions(
            service_url=_service_url(args),
            workspaces=tuple(args.workspace),
            verification_key=key,
            signing_alg=args.signing_alg,
            key_id=args.verification_key_id,
            scope=args.scope,
            min_delay_seconds=args.polling_min,
            max_delay_seconds=args.polling_max,
            decision_logs=args.decision_logs,
            allow_unsigned_bundles=args.allow_unsigned_bundles,
            credentials=Credentials(
                bearer_token_file=_absolute(args.bearer_token_file), bearer_token_env=args.bearer_token_env,
                client_cert=_absolute(args.client_cert), client_key=_absolute(args.client_key),
                ca_cert=_absolute(args.ca_cert), s3_signing=args.s3_signing,
            ),
            decision_logs_url=args.decision_logs_url,
            status_url=args.status_url,
            persist=args.persist,
            persistence_directory=_absolute(args.persistence_dir),
            long_polling_timeout_seconds=args.long_polling,
            discovery=args.discovery,
            oci=args.oci,
            oci_plain_http=args.oci_plain_http,
        )
    )
    if key is None:
        _warn_unsigned("opa-config: the config has no signing block")
    if args.out:
        atomic_write(args.out, text.encode())
        what = "a discovery bootstrap" if args.discovery else f"{len(args.workspace)} workspace(s)"
        print(f"Wrote OPA config for {what} to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _publish(args: argparse.Namespace) -> int:
    signer = signer_from(args)
    if signer is None:
        if not args.allow_unsigned_bundles:
            raise SekuireError(
                "no --signing-key: the bundles would be unsigned; give a key "
                "(or --allow-unsigned-bundles to publish unsigned bundles on purpose)"
            )
        _warn_unsigned("publish")
    publications = []
    for file in args.file:
        policy = policy_from(args, file)
        try:
            bundle = build_bundle(compile_policy(policy), signer=signer)
        except SekuireError as exc:
            raise exc.with_source(file) from None
        publications.append(Publication(policy=policy, bundle=bundle))
    if args.site is None and args.oci is None:
        raise SekuireError("give --site (a static tree) and/or --oci (a registry)")
    if args.oci:
        from ..distribute.oci import OCIReference, push_bundle

        target = OCIReference.parse(args.oci)
        for item in publications:
            reference = target.for_workspace(item.policy.workspace_id)
            push_bundle(reference, item.bundle, plain_http=args.oci_plain_http)
            print(f"Pushed the bundle of workspace {item.policy.workspace_id} to {reference}")
    if args.site is None:
        return 0
    written = publish_site(args.site, publications, keyring_from(args))
    if args.discovery:
        from ..distribute.discovery import write_discovery

        written.append(write_discovery(args.site, signer, signer.key_id if signer else None,
                                       min_delay=args.polling_min, max_delay=args.polling_max))
    for item in publications:
        print(f"Published {item.policy.policy_id} (v{item.policy.version}) for workspace {item.policy.workspace_id}")
    print(f"Wrote {len(written)} files under {Path(args.site)}")
    return 0
