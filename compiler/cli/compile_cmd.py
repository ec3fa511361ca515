"""``sekuire policy build`` and ``sekuire policy eval``: a verified policy.json to a signed bundle, and a decision from it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..bundle.keys import SIGNING_ALGORITHMS, load_verification_key
from ..bundle.signing import BundleSigner
from ..bundle.tarball import build_bundle, load_bundle
from ..errors import CompileError, PolicyFormatError, SekuireError
from ..files import atomic_write
from ..policy.canonical import strict_loads
from ..policy.document import Policy
from ..rego.compile import CompiledPolicy, compile_policy
from ..rego.extensions import load_extensions, render_extensions
from ..rego.library import TEST_WORKSPACE, write_library
from ..rego.lowering import MAX_SAFE_INTEGER
from .options import add_format_option, add_verify_options, policy_from

__all__ = ["action_input", "add_extension_option", "add_signing_options", "compiled_from", "register", "signer_from"]

EXIT_DENY = 3


def add_signing_options(parser: argparse.ArgumentParser) -> None:
    """The flags of ``opa build`` that sign a bundle."""
    parser.add_argument("--signing-key", metavar="KEY", help="PEM private key (or the HS* secret) that signs the bundle")
    parser.add_argument("--signing-alg", default="RS256", choices=SIGNING_ALGORITHMS, help="default: RS256")
    parser.add_argument("--signing-key-id", default="default", metavar="ID", help="kid/keyid of the signature (default: default)")
    parser.add_argument("--claims-file", metavar="FILE", help="extra JWT claims, as opa build --claims-file")
    parser.add_argument("--scope", help="scope claim of the signature")


def signer_from(args: argparse.Namespace) -> BundleSigner | None:
    if not args.signing_key:
        if args.claims_file or args.scope:
            raise CompileError("--claims-file and --scope need --signing-key")
        return None
    return BundleSigner.from_file(
        args.signing_key, alg=args.signing_alg, key_id=args.signing_key_id, scope=args.scope, claims_file=args.claims_file
    )


def register(policy: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    build = policy.add_parser("build", help="compile a verified policy.json into an OPA bundle")
    build.add_argument("--file", default="policy.json", metavar="FILE", help="the policy.json to compile (default: policy.json)")
    build.add_argument("--out", default="bundle.tar.gz", metavar="FILE", help="the bundle to write (default: bundle.tar.gz)")
    add_extension_option(build)
    add_signing_options(build)
    add_verify_options(build)
    build.set_defaults(handler=_build)

    rego = policy.add_parser("rego", help="write the Rego library rendered for a workspace (to read, or for opa test)")
    rego.add_argument("--out", required=True, metavar="DIR", help="directory to write the .rego files into")
    rego.add_argument("--workspace", default=TEST_WORKSPACE, metavar="ID", help=f"default: {TEST_WORKSPACE}")
    rego.add_argument("--tests", action="store_true", help="also write the _test.rego files")
    add_extension_option(rego)
    rego.set_defaults(handler=_rego)

    evaluate = policy.add_parser("eval", help="evaluate one action (exit 0 allow, 3 deny)")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", metavar="FILE", help="a policy.json, compiled in memory")
    source.add_argument("--bundle", metavar="FILE", help="a bundle built by `policy build`")
    question = evaluate.add_mutually_exclusive_group(required=True)
    question.add_argument(
        "--action", metavar="JSON",
        help='any action type, e.g. \'{"type": "tool", "name": "web_search"}\'; a rate_limit action may carry '
        '"usage": {"minute": N, "hour": N} (default 0 and 0)',
    )
    question.add_argument("--manifest", metavar="FILE", help="an agent manifest (sekuire.yml): the push gate's entry point")
    evaluate.add_argument("--agent", default="default", help="context.agent (default: default)")
    evaluate.add_argument(
        "--explain", action="store_true",
        help="ask the explain entry point: each violation's policy entry, the allowed entries that matched",
    )
    evaluate.add_argument("--verification-key", metavar="KEY", help="public key that verifies --bundle")
    evaluate.add_argument("--signing-alg", choices=SIGNING_ALGORITHMS, help="expected algorithm of the bundle signature")
    evaluate.add_argument("--allow-unsigned-bundle", action="store_true", help="evaluate a bundle without signatures")
    add_extension_option(evaluate)
    add_format_option(evaluate, default="json")
    add_verify_options(evaluate)
    evaluate.set_defaults(handler=_eval)


def add_extension_option(parser: argparse.ArgumentParser) -> None:
    """``--extension DIR`` (repeatable): the organisation's Rego rules to build in (docs/authoring.md)."""
    parser.add_argument(
        "--extension", action="append", default=[], metavar="DIR",
        help="a directory of organisation rules (package ext.<name>, deny contains {rule, message}); repeatable",
    )


def compiled_from(args: argparse.Namespace, policy: Policy) -> CompiledPolicy:
    """The policy compiled with the ``--extension`` modules, which must compile beside the library."""
    extensions = load_extensions(args.extension)
    try:
        compiled = compile_policy(policy, extensions)
    except SekuireError as exc:
        raise exc.with_source(args.file) from None
    if extensions:
        from .extension_check import check_extensions

        check_extensions(compiled, extensions)
    return compiled


def _build(args: argparse.Namespace) -> int:
    policy = policy_from(args, args.file)
    signer = signer_from(args)
    compiled = compiled_from(args, policy)
    data = build_bundle(compiled, signer=signer)
    atomic_write(args.out, data)
    for warning in policy.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    signed = f"signed {signer.alg} (kid {signer.key_id})" if signer else "UNSIGNED (no --signing-key)"
    print(f"Built bundle {args.out} for workspace {policy.workspace_id}: revision {compiled.revision}, {signed}")
    return 0


def _rego(args: argparse.Namespace) -> int:
    written = write_library(args.out, args.workspace, tests=args.tests)
    extensions = render_extensions(load_extensions(args.extension), args.workspace, tests=args.tests)
    for path, source in extensions.items():
        atomic_write(Path(args.out) / path, source.encode("utf-8"))
    written += [Path(args.out) / path for path in extensions]
    print(f"Wrote {len(written)} Rego files for workspace {args.workspace} under {args.out}")
    return 0


def _parse_action(text: str) -> dict[str, Any]:
    try:
        action = strict_loads(text)
    except PolicyFormatError as exc:
        raise PolicyFormatError(str(exc), source="--action") from None
    if not isinstance(action, dict):
        raise PolicyFormatError("expected a JSON object", source="--action")
    return action


def action_input(action: dict[str, Any], normalize: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """The action as the enforcer would send it; a rate_limit action keeps the ``usage`` it names (else zero)."""
    if action.get("type") != "rate_limit":
        return normalize(action)
    usage = action.pop("usage", {"minute": 0, "hour": 0})
    if not (isinstance(usage, dict) and set(usage) == {"minute", "hour"} and all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SAFE_INTEGER for v in usage.values()
    )):
        raise PolicyFormatError('usage must be {"minute": N, "hour": N} with counts from 0 to 2**53')
    return {**normalize(action), "usage": usage}


def _eval(args: argparse.Namespace) -> int:
    # The CLI is the top of the dependency graph: the runtime is imported only by the commands that use it.
    from ...runtime.decision import Decision
    from ...runtime.engine import EmbeddedEngine, decision_path, sibling_path
    from ...runtime.normalize import normalize_action

    if args.manifest is not None:
        from ...runtime.manifest import load_manifest, manifest_input

        document: dict[str, Any] = manifest_input(load_manifest(args.manifest))
    else:
        try:
            document = {"action": action_input(_parse_action(args.action), normalize_action)}
        except SekuireError as exc:
            raise exc.with_source("--action") from None
    if args.bundle and args.extension:
        raise CompileError("--extension applies to --file: a bundle carries the extensions it was built with")
    if args.file:
        policy = policy_from(args, args.file)
        engine = EmbeddedEngine.from_compiled(compiled_from(args, policy))
        workspace = policy.workspace_id
    else:
        metadata = (load_bundle(args.bundle).manifest or {}).get("metadata")
        named = metadata.get("workspace_id") if isinstance(metadata, dict) else None
        if not isinstance(named, str) or not named:
            raise CompileError("not a sekuire bundle: no workspace_id in its manifest metadata", source=args.bundle)
        workspace = named
        engine = EmbeddedEngine.from_bundle(
            args.bundle,
            verification_key=(
                load_verification_key(args.verification_key, alg=args.signing_alg) if args.verification_key else None
            ),
            alg=args.signing_alg,
            allow_unsigned=args.allow_unsigned_bundle,
        )
    path = decision_path(workspace)
    if args.manifest is not None:
        path = sibling_path(path, "explain_manifest" if args.explain else "manifest")
    else:
        document["context"] = {"agent": args.agent, "workspace": workspace}
        if args.explain:
            path = sibling_path(path, "explain")
    with engine:
        decision = engine.evaluate(path, document)
    allowed = decision.get("allow") is True
    if args.format == "json":
        print(json.dumps(decision, indent=2, ensure_ascii=False))
    else:
        print(Decision.from_result(decision).explain())
    return 0 if allowed else EXIT_DENY
