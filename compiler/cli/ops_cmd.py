"""``sekuire opa-config`` and ``sekuire publish``: plug the bundles into existing OPA infrastructure."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..bundle.tarball import build_bundle
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
    config.add_argument("--service-url", required=True, metavar="URL", help="where `sekuire publish` output is served")
    config.add_argument("--workspace", required=True, action="append", metavar="ID", help="repeat for several workspaces")
    config.add_argument("--verification-key", metavar="FILE", help="PEM public key that verifies the bundle signatures")
    config.add_argument("--verification-key-id", default=DEFAULT_KEY_ID, metavar="ID", help="default: default")
    config.add_argument("--signing-alg", default="RS256", help="default: RS256")
    config.add_argument("--scope", help="scope the bundle signatures must carry")
    config.add_argument("--polling-min", type=int, default=60, metavar="SECONDS", help="OPA polls at least this often (default: 60)")
    config.add_argument("--polling-max", type=int, default=120, metavar="SECONDS", help="and at most this often (default: 120)")
    config.add_argument("--decision-logs", choices=("console", "service"), help="also configure OPA decision logs")
    config.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    config.set_defaults(handler=_opa_config)

    publish = sub.add_parser("publish", help="write a static site serving policies, keys and bundles")
    publish.add_argument("--site", required=True, metavar="DIR", help="the directory to write the static site into")
    publish.add_argument("--file", required=True, action="append", metavar="FILE", help="policy.json; repeat for several")
    add_signing_options(publish)
    add_verify_options(publish)
    publish.set_defaults(handler=_publish)


def _opa_config(args: argparse.Namespace) -> int:
    key = None
    if args.verification_key:
        try:
            key = read_limited(args.verification_key, 1 << 20).decode()
        except (OSError, UnicodeDecodeError) as exc:
            raise SekuireError(getattr(exc, "strerror", None) or str(exc), source=args.verification_key) from None
    text = opa_config_yaml(
        OPAConfigOptions(
            service_url=args.service_url,
            workspaces=tuple(args.workspace),
            verification_key=key,
            signing_alg=args.signing_alg,
            key_id=args.verification_key_id,
            scope=args.scope,
            min_delay_seconds=args.polling_min,
            max_delay_seconds=args.polling_max,
            decision_logs=args.decision_logs,
        )
    )
    if args.out:
        atomic_write(args.out, text.encode())
        print(f"Wrote OPA config for {len(args.workspace)} workspace(s) to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _publish(args: argparse.Namespace) -> int:
    signer = signer_from(args)
    publications = []
    for file in args.file:
        policy = policy_from(args, file)
        try:
            bundle = build_bundle(compile_policy(policy), signer=signer)
        except SekuireError as exc:
            raise exc.with_source(file) from None
        publications.append(Publication(policy=policy, bundle=bundle))
    written = publish_site(args.site, publications, keyring_from(args))
    for item in publications:
        print(f"Published {item.policy.policy_id} (v{item.policy.version}) for workspace {item.policy.workspace_id}")
    print(f"Wrote {len(written)} files under {Path(args.site)}")
    return 0
