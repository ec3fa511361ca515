"""``sekuire keys generate|trust|list|remove``: signing keys, and the keyring that is the only root of trust.

``keys trust`` is the explicit act that adds a key (docs/trust.md): by its hex
(``--public-key``) or as a backend serves it (``--from-backend``; checked
against ``--fingerprint`` when given, and refused if it carries a rotation
statement that does not verify). Each prints the key's fingerprint.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from ..errors import KeyringError
from ..files import atomic_write, read_limited
from ..policy.keyring import Keyring, fingerprint, resolve_keyring
from ..textsafe import clean
from .options import add_format_option

__all__ = ["read_seed", "register"]

_HEX_SEED = re.compile(r"^[0-9a-f]{64}$")
BUNDLE_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="generate signing keys").add_subparsers(dest="keys_command", metavar="SUBCOMMAND")
    keys.required = True
    gen = keys.add_parser("generate", help="generate a key pair")
    gen.add_argument("--key-id", required=True, metavar="ID", help="the id the key is known by (signing_key_id, or the bundle kid)")
    gen.add_argument("--out", required=True, metavar="PREFIX", help="writes PREFIX.key/PREFIX.pub (ed25519) or PREFIX.pem/PREFIX.pub.pem")
    gen.add_argument(
        "--algorithm",
        default="ed25519",
        choices=("ed25519", *BUNDLE_ALGORITHMS),
        help="ed25519 signs policy.json; RS256/PS256/ES256/EdDSA sign OPA bundles (PEM files; default: ed25519)",
    )
    gen.add_argument("--keyring", metavar="FILE", help="also pin the ed25519 public key in this keyring file")
    gen.set_defaults(handler=_generate)

    trust = keys.add_parser("trust", help="add a policy signing key to the keyring (prints its fingerprint)")
    trust.add_argument("--key-id", required=True, metavar="ID", help="the signing_key_id policies name this key by")
    source = trust.add_mutually_exclusive_group(required=True)
    source.add_argument("--public-key", metavar="HEX", help="the Ed25519 public key, 64 hex digits")
    source.add_argument("--from-backend", metavar="URL", help="fetch the key from URL/v1/keys/<ID>")
    trust.add_argument("--fingerprint", metavar="SHA256:...", help="refuse unless the key has this fingerprint")
    trust.add_argument("--keyring", metavar="FILE", help="keyring file (default: $SEKUIRE_KEYRING, else the user keyring)")
    trust.set_defaults(handler=_trust)

    listing = keys.add_parser("list", help="list the trusted keys with their fingerprints")
    listing.add_argument("--keyring", metavar="FILE", help="keyring file (default: $SEKUIRE_KEYRING, else the user keyring)")
    add_format_option(listing)
    listing.set_defaults(handler=_list)

    remove = keys.add_parser("remove", help="stop trusting a key")
    remove.add_argument("--key-id", required=True, metavar="ID", help="the key id to remove from the keyring")
    remove.add_argument("--keyring", metavar="FILE", help="keyring file (default: $SEKUIRE_KEYRING, else the user keyring)")
    remove.set_defaults(handler=_remove)


def read_seed(path: str) -> bytes:
    """Read an Ed25519 private seed written by ``keys generate`` (64 hex digits)."""
    try:
        text = read_limited(Path(path), 4096).decode("ascii", "replace").strip()
    except OSError as exc:
        raise KeyringError(exc.strerror or str(exc), source=path) from None
    if not _HEX_SEED.match(text):
        raise KeyringError("not an Ed25519 private key (expected 64 lower-case hex digits)", source=path)
    return bytes.fromhex(text)


def _generate(args: argparse.Namespace) -> int:
    prefix = args.out
    if args.algorithm == "ed25519":
        from nacl.signing import SigningKey

        signing = SigningKey.generate()
        public = bytes(signing.verify_key)
        keyring = None
        if args.keyring:
            keyring = Keyring.load(args.keyring, missing_ok=True)
            keyring.pin(args.key_id, public)
        atomic_write(f"{prefix}.key", bytes(signing).hex().encode() + b"\n", mode=0o600)
        atomic_write(f"{prefix}.pub", public.hex().encode() + b"\n")
        if keyring is not None:
            keyring.save()
        print(f"Generated ed25519 key {args.key_id}: private {prefix}.key (keep secret), public {prefix}.pub")
        if keyring is not None:
            print(f"Pinned {args.key_id} in {args.keyring}")
        return 0

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if args.algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif args.algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    atomic_write(f"{prefix}.pem", pem, mode=0o600)
    atomic_write(f"{prefix}.pub.pem", pub)
    print(
        f"Generated {args.algorithm} bundle signing key {args.key_id}: private {prefix}.pem (keep secret), "
        f"public {prefix}.pub.pem"
    )
    return 0


def _trust(args: argparse.Namespace) -> int:
    keyring = resolve_keyring(args.keyring, missing_ok=True)
    note = ""
    if args.public_key is not None:
        text = args.public_key.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", text):
            raise KeyringError("--public-key: expected 64 hex digits (an Ed25519 public key)")
        public = bytes.fromhex(text)
    else:
        from ..policy.backend import fetch_key_document
        from ..policy.rotation import verify_rotation

        document = fetch_key_document(args.from_backend, args.key_id)
        public = document.public_key
        if document.rotation is not None:
            # A statement that does not verify is a sign of tampering: refuse rather than ignore it.
            verify_rotation(keyring, args.key_id, public, *document.rotation)
            note = f", endorsed by trusted key {clean(document.rotation[0])}"
    found = fingerprint(public)
    if args.fingerprint is not None and args.fingerprint.strip() != found:
        raise KeyringError(f"key {clean(args.key_id)} has fingerprint {found}, not {clean(args.fingerprint)}; not trusted")
    added = keyring.pin(args.key_id, public)
    if added:
        keyring.save()
        print(f"Trusted key {clean(args.key_id)} (ed25519 {found}{note}) in {keyring.path}")
    else:
        print(f"Key {clean(args.key_id)} (ed25519 {found}) is already trusted in {keyring.path}")
    if args.from_backend is not None and not note and args.fingerprint is None:
        print("Compare this fingerprint with the key's owner: it was taken from the backend as served.")
    return 0


def _list(args: argparse.Namespace) -> int:
    keyring = resolve_keyring(args.keyring, missing_ok=True)
    entries = [
        {"key_id": key_id, "algorithm": "ed25519", "public_key": key.hex(), "fingerprint": fingerprint(key)}
        for key_id, key in sorted(keyring.keys.items())
    ]
    if args.format == "json":
        print(json.dumps({"keyring": str(keyring.path), "keys": entries}, indent=2))
    elif not entries:
        print(f"No trusted keys in {keyring.path}")
    else:
        for entry in entries:
            print(f"{clean(entry['key_id'])}  ed25519  {entry['fingerprint']}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    keyring = resolve_keyring(args.keyring)
    if keyring.path is not None and not keyring.path.exists():
        raise KeyringError("no such keyring file", source=str(keyring.path))
    keyring.remove(args.key_id)
    keyring.save()
    print(f"Removed key {clean(args.key_id)} from {keyring.path}")
    return 0
