"""``sekuire keys generate``: Ed25519 keys for policy.json, RSA/EC keys for OPA bundle signing."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..errors import KeyringError
from ..files import atomic_write, read_limited
from ..policy.keyring import Keyring

__all__ = ["read_seed", "register"]

_HEX_SEED = re.compile(r"^[0-9a-f]{64}$")
BUNDLE_ALGORITHMS = ("RS256", "PS256", "ES256")


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
        help="ed25519 signs policy.json; RS256/PS256/ES256 sign OPA bundles (default: ed25519)",
    )
    gen.add_argument("--keyring", metavar="FILE", help="also pin the ed25519 public key in this keyring file")
    gen.set_defaults(handler=_generate)


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
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if args.algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
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
