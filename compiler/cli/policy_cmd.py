"""``sekuire policy pull|validate|show|sign``: the seed's policy commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import KeyringError, PolicyFormatError, UnknownKeyError
from ..files import atomic_write, read_limited
from ..policy.backend import Fetched, fetch_active_policy_document, fetch_key_document, verify_active_policy
from ..policy.canonical import strict_loads
from ..policy.document import MAX_POLICY_BYTES, Policy, parse_policy
from ..policy.integrity import sign_document
from ..policy.keyring import Keyring, fingerprint, resolve_keyring
from ..policy.rotation import verify_rotation
from ..textsafe import clean, quote_value
from . import compile_cmd, policy_show, test_cmd
from .keys_cmd import read_seed
from .options import (
    add_backend_option,
    add_format_option,
    add_verify_options,
    backend_from,
    policy_from,
    print_json,
)
from .policy_show import summary_lines

__all__ = ["register", "summary_lines"]

DEFAULT_POLICY_FILE = "policy.json"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = sub.add_parser("policy", help="pull, verify, inspect, sign and compile policy.json").add_subparsers(
        dest="policy_command", metavar="SUBCOMMAND"
    )
    policy.required = True

    pull = policy.add_parser("pull", help="download, verify and save a workspace's active policy")
    pull.add_argument("--workspace", required=True, metavar="ID", help="the workspace whose active policy to fetch")
    pull.add_argument("--out", default=DEFAULT_POLICY_FILE, metavar="FILE", help="where to save it (default: policy.json)")
    add_backend_option(pull)
    add_verify_options(pull)
    pull.add_argument(
        "--trust-on-first-use",
        action="store_true",
        help="while the keyring is empty, trust the backend's signing key and save it (prints its fingerprint)",
    )
    pull.set_defaults(handler=_pull)

    validate = policy.add_parser("validate", help="verify a policy.json's hash and signature")
    validate.add_argument("--file", default=DEFAULT_POLICY_FILE, metavar="FILE", help="the policy.json to verify (default: policy.json)")
    add_format_option(validate)
    add_verify_options(validate)
    validate.set_defaults(handler=_validate)

    show = policy.add_parser("show", help="print a policy.json's summary and whether it verifies")
    show.add_argument("--file", default=DEFAULT_POLICY_FILE, metavar="FILE", help="the policy.json to show (default: policy.json)")
    add_format_option(show)
    add_verify_options(show)
    show.set_defaults(handler=_show)

    sign = policy.add_parser("sign", help="hash and sign a policy.json with an Ed25519 key")
    sign.add_argument("--file", required=True, metavar="FILE", help="policy.json to sign (hash/signature are replaced)")
    sign.add_argument("--key", required=True, metavar="FILE", help="Ed25519 private key file from `sekuire keys generate`")
    sign.add_argument("--key-id", required=True, metavar="ID", help="the signing_key_id to write (the id verifiers trust the key under)")
    sign.add_argument("--out", metavar="FILE", help="where to write (default: overwrite --file)")
    sign.set_defaults(handler=_sign)

    compile_cmd.register(policy)
    test_cmd.register(policy)


def _warn(policy: Policy) -> None:
    for warning in policy.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if policy.signature_status == "unsigned":
        print(f"warning: policy {policy.policy_id} is UNSIGNED; accepted only because of --allow-unsigned", file=sys.stderr)


def _integrity_label(policy: Policy) -> str:
    return "hash/signature" if policy.signature_status == "verified" else "hash only, UNSIGNED"


def _validate(args: argparse.Namespace) -> int:
    policy = policy_from(args, args.file)
    _warn(policy)
    if args.format == "json":
        print_json({
            "policy_id": policy.policy_id,
            "workspace_id": policy.workspace_id,
            "version": policy.version,
            "hash": policy.hash,
            "signing_key_id": policy.signing_key_id,
            "signature_status": policy.signature_status,
            "verified": True,
        })  # fmt: skip
        return 0
    print(f"Policy {policy.policy_id} (v{policy.version}) integrity verified ({_integrity_label(policy)})")
    return 0


def _show(args: argparse.Namespace) -> int:
    return policy_show.show(args)


def _sign(args: argparse.Namespace) -> int:
    source = args.file
    try:
        document = strict_loads(read_limited(Path(source), MAX_POLICY_BYTES))
    except OSError as exc:
        raise PolicyFormatError(exc.strerror or str(exc), source=source) from None
    except PolicyFormatError as exc:
        raise exc.with_source(source) from None
    if not isinstance(document, dict) or not isinstance(document.get("content"), dict):
        raise PolicyFormatError("expected an object", source=source, pointer="/content")
    for field in ("policy_id", "workspace_id", "version"):
        if not isinstance(document.get(field), str) or not document[field]:
            raise PolicyFormatError("expected a non-empty string", source=source, pointer=f"/{field}")
    document.setdefault("status", "active")
    document.pop("signing_public_key", None)
    seed = read_seed(args.key)
    signed = sign_document(document, seed, args.key_id)
    # Prove the result verifies with the key we just used before writing anything.
    from nacl.signing import SigningKey

    public = bytes(SigningKey(seed).verify_key)
    parse_policy(signed, Keyring(keys={args.key_id: public}), source=source)
    out = args.out or source
    atomic_write(out, (json.dumps(signed, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    print(f"Signed policy {signed['policy_id']} (v{signed['version']}) with key {args.key_id}: {out}")
    return 0


def _signing_key_to_trust(args: argparse.Namespace, backend: str, keyring: Keyring, fetched: Fetched) -> tuple[str, bytes, str] | None:
    """The key this pull may add to the keyring, and how: on first use (opted in) or by an endorsed rotation.

    None when the keyring already holds the policy's key (or the policy names none); UnknownKeyError when the
    key is unknown and neither applies. A key from the backend is never trusted for being served.
    """
    document = fetched.document
    key_id = document.get("signing_key_id") if isinstance(document, dict) and document.get("signature") else None
    if not isinstance(key_id, str) or not key_id or keyring.get(key_id) is not None or args.trust_embedded_key:
        return None
    hint = ("trust it with `sekuire keys trust --key-id ID --public-key HEX` (or `--from-backend URL`), "
            "or pull with --trust-on-first-use while the keyring is empty")
    if args.trust_on_first_use:
        if keyring.keys:
            raise KeyringError(
                f"--trust-on-first-use applies only while the keyring is empty; it holds {len(keyring.keys)} key(s) "
                f"and not {clean(key_id)}: add keys with `sekuire keys trust`",
                source=str(keyring.path) if keyring.path else None,
            )
        return key_id, fetch_key_document(backend, key_id).public_key, "on first use (--trust-on-first-use)"
    if not keyring.keys:
        raise UnknownKeyError(f"unknown signing key {quote_value(key_id)}: the keyring is empty; {hint}",
                              source=fetched.url, pointer="/signing_key_id")
    key = fetch_key_document(backend, key_id)
    if key.rotation is None:
        raise UnknownKeyError(
            f"unknown signing key {quote_value(key_id)}: not in the trusted keyring and not endorsed by a trusted key; "
            + hint, source=fetched.url, pointer="/signing_key_id")
    verify_rotation(keyring, key_id, key.public_key, *key.rotation)
    return key_id, key.public_key, f"by a rotation statement of trusted key {clean(key.rotation[0])}"


def _pull(args: argparse.Namespace) -> int:
    from ...runtime.floor import RollbackFloor  # the CLI is the top: the runtime only when this command runs

    backend = backend_from(args)
    keyring = resolve_keyring(args.keyring, missing_ok=True)
    fetched = fetch_active_policy_document(backend, args.workspace)
    new_key = _signing_key_to_trust(args, backend, keyring, fetched)
    verifying = keyring if new_key is None else Keyring(keys={**keyring.keys, new_key[0]: new_key[1]})
    policy = verify_active_policy(
        fetched, args.workspace, verifying, allow_unsigned=args.allow_unsigned, trust_embedded_key=args.trust_embedded_key
    )
    RollbackFloor.beside(keyring).advance(args.workspace, policy, source=fetched.url)
    atomic_write(args.out, fetched.body)
    if new_key is not None:
        keyring.pin(new_key[0], new_key[1])
        keyring.save()
    _warn(policy)
    if new_key is not None:
        print(f"Trusted signing key {clean(new_key[0])} (ed25519 {fingerprint(new_key[1])}) {new_key[2]}, "
              f"saved in {keyring.path}")
    print(f"Saved active policy {clean(policy.policy_id)} (v{clean(policy.version)}) for workspace "
          f"{clean(policy.workspace_id)} to {args.out}")
    print(f"Signature: {'verified' if policy.signature_status == 'verified' else 'UNSIGNED'}")
    return 0
