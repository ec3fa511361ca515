"""Options shared by several subcommands."""

from __future__ import annotations

import argparse
import json
import os

from ..policy.backend import DEFAULT_BACKEND
from ..policy.document import Policy, load_policy
from ..policy.keyring import Keyring, resolve_keyring

__all__ = [
    "add_backend_option",
    "add_format_option",
    "add_verify_options",
    "backend_from",
    "keyring_from",
    "policy_from",
    "print_json",
]


def add_verify_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keyring", metavar="FILE", help="trusted keys (default: $SEKUIRE_KEYRING, else the user keyring)")
    parser.add_argument(
        "--allow-unsigned", action="store_true", help="accept a policy without a signature (development only)"
    )
    parser.add_argument(
        "--trust-embedded-key",
        action="store_true",
        help="trust a signing_public_key carried inside the policy itself (unsafe; testing only)",
    )


def add_format_option(parser: argparse.ArgumentParser, *, default: str = "text") -> None:
    """``--format text|json`` for a read command, with ``--json`` as its alias."""
    parser.add_argument(
        "--format", choices=("text", "json"), default=default, help=f"output format (default: {default})"
    )
    parser.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")


def print_json(value: object) -> None:
    """Print ``value`` as indented JSON, non-ASCII kept, keys sorted (what every ``--format json`` writes)."""
    print(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", metavar="URL", help=f"policy backend (default: $SEKUIRE_BACKEND or {DEFAULT_BACKEND})")


def backend_from(args: argparse.Namespace) -> str:
    return args.backend or os.environ.get("SEKUIRE_BACKEND") or DEFAULT_BACKEND


def keyring_from(args: argparse.Namespace) -> Keyring:
    return resolve_keyring(args.keyring)


def policy_from(args: argparse.Namespace, path: str) -> Policy:
    return load_policy(
        path, keyring_from(args), allow_unsigned=args.allow_unsigned, trust_embedded_key=args.trust_embedded_key
    )
