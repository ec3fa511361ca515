"""``sekuire publish``: signed bundles (and a discovery bundle) to a static site and/or an OCI registry."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..bundle.signing import BundleSigner
from ..bundle.tarball import build_bundle
from ..distribute.discovery import build_discovery_bundle
from ..distribute.layout import DISCOVERY_RESOURCE, Polling, bundle_resource, check_config_algorithm
from ..distribute.oci import OCIReference, parse_oci_reference
from ..distribute.publish import Publication, publish_oci, publish_site
from ..errors import DistributionError, SekuireError
from ..rego.compile import compile_policy
from .compile_cmd import add_signing_options, signer_from
from .opa_config_cmd import add_polling_options, add_unsigned_option, warn_unsigned
from .options import add_verify_options, keyring_from, policy_from

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    publish = sub.add_parser("publish", help="publish signed bundles to a static site or an OCI registry")
    publish.add_argument("--site", metavar="DIR", help="write a static site (policies, keys, bundles) into DIR")
    publish.add_argument("--oci", metavar="REGISTRY/REPOSITORY[:TAG]", help="push each bundle to REGISTRY/REPOSITORY/<ws>:TAG")
    publish.add_argument("--plain-http", action="store_true", help="the --oci registry speaks plain HTTP (loopback tests only)")
    publish.add_argument("--file", required=True, action="append", metavar="FILE", help="policy.json; repeat for several")
    publish.add_argument(
        "--discovery", action="store_true", help="also publish a signed discovery bundle naming every workspace bundle"
    )
    add_polling_options(publish, "the workspace bundles named in the discovery bundle (with --discovery)")
    add_signing_options(publish)
    add_verify_options(publish)
    add_unsigned_option(publish, "publish bundles without --signing-key: UNSIGNED bundles anyone can alter (unsafe)")
    publish.set_defaults(handler=_publish)


def _publish(args: argparse.Namespace) -> int:
    if not args.site and not args.oci:
        raise DistributionError("give --site DIR, --oci REGISTRY/REPOSITORY[:TAG], or both")
    if args.plain_http and not args.oci:
        raise DistributionError("--plain-http is for --oci registries")
    reference = parse_oci_reference(args.oci) if args.oci else None
    polling = Polling(args.polling_min, args.polling_max, persist=args.persist).check()
    signer = signer_from(args)
    if signer is None:
        if not args.allow_unsigned_bundles:
            raise SekuireError(
                "no --signing-key: the bundles would be unsigned; give a key "
                "(or --allow-unsigned-bundles to publish unsigned bundles on purpose)"
            )
        warn_unsigned("publish")
    elif args.oci or args.discovery:
        check_config_algorithm(signer.alg)  # only an OPA's config pulls these: it must be able to verify them
    publications = []
    for file in args.file:
        policy = policy_from(args, file)
        try:
            bundle = build_bundle(compile_policy(policy), signer=signer)
        except SekuireError as exc:
            raise exc.with_source(file) from None
        publications.append(Publication(policy=policy, bundle=bundle))
    workspaces = [item.policy.workspace_id for item in publications]
    if len(set(workspaces)) != len(workspaces):
        raise DistributionError(f"two --file policies are for the same workspace: {sorted(workspaces)}")
    key_id = signer.key_id if signer is not None else None
    scope = signer.scope if signer is not None else None
    if reference is not None:
        _push(reference, publications, args, polling, key_id, scope, signer)
    if args.site:
        discovery = None
        if args.discovery:
            resources = {ws: bundle_resource(ws) for ws in workspaces}
            discovery, _ = build_discovery_bundle(resources, polling, signer=signer, key_id=key_id, scope=scope)
        written = publish_site(args.site, publications, keyring_from(args), discovery=discovery)
        for item in publications:
            print(f"Published {item.policy.policy_id} (v{item.policy.version}) for workspace {item.policy.workspace_id}")
        if discovery is not None:
            print(f"Discovery bundle: {Path(args.site) / DISCOVERY_RESOURCE}")
        print(f"Wrote {len(written)} files under {Path(args.site)}")
    return 0


def _push(
    reference: OCIReference,
    publications: list[Publication],
    args: argparse.Namespace,
    polling: Polling,
    key_id: str | None,
    scope: str | None,
    signer: BundleSigner | None,
) -> None:
    discovery = None
    if args.discovery:
        resources = {item.policy.workspace_id: reference.workspace(item.policy.workspace_id) for item in publications}
        discovery = build_discovery_bundle(resources, polling, signer=signer, key_id=key_id, scope=scope)
    for target, digest in publish_oci(reference, publications, discovery=discovery, plain_http=args.plain_http):
        print(f"Pushed {target} ({digest or 'digest not reported'})")
