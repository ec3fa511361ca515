"""``sekuire bundle verify|inspect``: check an OPA bundle's signature as OPA would, or show what is inside."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..bundle.gojson import file_digest
from ..bundle.keys import SIGNING_ALGORITHMS, load_verification_key
from ..bundle.tarball import SIGNATURES_FILE, Bundle, load_bundle
from ..bundle.verify import decode_signature, verify_bundle
from ..errors import BundleError
from .options import add_format_option, print_json

__all__ = ["inspect_report", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bundle = sub.add_parser("bundle", help="verify and inspect OPA bundles")
    commands = bundle.add_subparsers(dest="bundle_command", metavar="SUBCOMMAND")
    commands.required = True

    verify = commands.add_parser("verify", help="verify a signed bundle the way OPA does (--verification-key)")
    verify.add_argument("bundle", metavar="BUNDLE", help="bundle .tar.gz")
    verify.add_argument(
        "--verification-key",
        required=True,
        metavar="KEY",
        help="PEM public key file; for HS* the shared secret (or a file holding it)",
    )
    verify.add_argument("--verification-key-id", metavar="ID", help="refuse a signature naming another key id")
    verify.add_argument(
        "--signing-alg",
        metavar="ALG",
        help=f"expected algorithm, one of {', '.join(SIGNING_ALGORITHMS)} "
        "(default: RS256 for RSA keys, the curve's ES* for EC keys)",
    )
    verify.add_argument("--scope", help="the scope the signature must carry (default: none)")
    add_format_option(verify)
    verify.set_defaults(handler=_verify)

    inspect = commands.add_parser("inspect", help="show a bundle's manifest, files and signature header")
    inspect.add_argument("bundle", metavar="BUNDLE", help="bundle .tar.gz")
    add_format_option(inspect)
    inspect.set_defaults(handler=_inspect)


def _verify(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle)
    key = load_verification_key(args.verification_key, alg=args.signing_alg)
    verified = verify_bundle(bundle, key=key, alg=args.signing_alg, scope=args.scope, key_id=args.verification_key_id)
    if args.format == "json":
        print_json({
            "bundle": args.bundle,
            "verified": True,
            "revision": verified.revision,
            "alg": verified.alg,
            "key_id": verified.key_id,
            "scope": verified.scope,
            "files": list(verified.files),
        })  # fmt: skip
        return 0
    print(f"Bundle {args.bundle} verified: {len(verified.files)} files, revision {verified.revision or '(none)'}")
    return 0


def inspect_report(bundle: Bundle) -> dict[str, Any]:
    """What ``inspect`` shows: manifest fields, files with OPA's signature hashes, the unverified JWT header."""
    manifest = bundle.manifest or {}
    info = decode_signature(bundle)
    files = []
    for name, content in bundle.files.items():
        try:
            digest: str | None = file_digest(name, content) if name != SIGNATURES_FILE else None
        except BundleError:
            digest = None  # not JSON: verification would refuse it; inspect still lists it
        files.append({"name": name, "size": len(content), "sha256": digest})
    signature = None
    if info is not None:
        signature = {"alg": info.alg, "kid": info.signing_key_id, "scope": info.scope, "verified": False}
    return {
        "bundle": bundle.source,
        "revision": bundle.revision,
        "roots": bundle.roots,
        "rego_version": manifest.get("rego_version"),
        "metadata": manifest.get("metadata") or {},
        "files": files,
        "signature": signature,
    }


def _inspect(args: argparse.Namespace) -> int:
    report = inspect_report(load_bundle(args.bundle))
    if args.format == "json":
        print_json(report)
        return 0
    roots = report["roots"]
    print(f"Bundle:    {report['bundle']}")
    print(f"Revision:  {report['revision'] or '(none)'}")
    print(f"Roots:     {', '.join(roots) if roots is not None else '(all of data)'}")
    if report["rego_version"] is not None:
        print(f"Rego:      v{report['rego_version']}")
    for key, value in sorted(report["metadata"].items()):
        print(f"Metadata:  {key} = {json.dumps(value, ensure_ascii=False)}")
    signature = report["signature"]
    if signature is None:
        print("Signature: none (unsigned bundle)")
    else:
        print(
            f"Signature: alg {signature['alg']}, kid {signature['kid'] or '(none)'}, "
            f"scope {signature['scope'] or '(none)'} (not verified; use `sekuire bundle verify`)"
        )
    print("Files:")
    width = max((len(entry["name"]) for entry in report["files"]), default=0)
    for entry in report["files"]:
        digest = entry["sha256"] or "-"
        print(f"  {entry['name']:<{width}}  {entry['size']:>9}  {digest}")
    return 0
