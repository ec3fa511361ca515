"""What the security suites share: the example policies, an RSA bundle key, signed bundles and an OPA serving them.

The example policies are signed with the test-only key of ``policies/examples/keyring.json``;
bundles are signed RS256 with a key made for the test session, the way
``sekuire policy build --signing-key`` signs them, and OPA activates them only
after verifying them with ``--verification-key``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sekuire.compiler import Keyring, Policy, load_policy, parse_policy
from sekuire.compiler.bundle.signing import BundleSigner
from sekuire.compiler.bundle.tarball import build_bundle
from sekuire.compiler.policy.integrity import content_hash
from sekuire.compiler.rego.compile import compile_policy

from .conftest import ROOT, OPAServer

__all__ = [
    "EXAMPLES",
    "EXAMPLE_NAMES",
    "KEYRING",
    "BundleKey",
    "bundle_key",
    "decision_of",
    "load_example",
    "serve_bundles",
    "signed_bundle",
    "unsigned_policy",
]

EXAMPLES = ROOT / "policies" / "examples"
EXAMPLE_NAMES = ("coding-assistant", "locked-down", "research-agent")
KEYRING = EXAMPLES / "keyring.json"


def load_example(name: str) -> Policy:
    """An example policy, verified against the examples' keyring."""
    return load_policy(EXAMPLES / f"{name}.json", KEYRING)


class BundleKey:
    """An RSA key pair as PEM: ``private`` signs bundles, ``public`` is OPA's ``--verification-key``."""

    def __init__(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self.public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@functools.cache
def bundle_key() -> BundleKey:
    """One key per test session: RSA key generation costs tens of milliseconds."""
    return BundleKey()


def signed_bundle(policy: Policy, key: BundleKey | None = None) -> bytes:
    """The policy's bundle signed RS256 (what ``sekuire policy build --signing-key`` writes)."""
    return build_bundle(compile_policy(policy), signer=BundleSigner((key or bundle_key()).private))


@contextlib.contextmanager
def serve_bundles(opa_bin: str, bundles: Mapping[str, bytes], directory: Path, *, port: int | None = None,
                  key: BundleKey | None = None) -> Iterator[OPAServer]:
    """``opa run --server`` on loopback with every bundle verified by ``--verification-key``; stopped after."""
    key = key or bundle_key()
    directory.mkdir(parents=True, exist_ok=True)
    public = directory / "bundle.pub.pem"
    public.write_bytes(key.public)
    args: list[str] = []
    for name, data in bundles.items():
        path = directory / f"{name}.tar.gz"
        path.write_bytes(data)
        args += ["--bundle", str(path)]
    server = OPAServer(opa_bin, [*args, "--verification-key", str(public)], port=port)
    # Healthy only once every bundle is activated (OPA verified each signature).
    with server.start(health_query="?bundles"):
        yield server


def unsigned_policy(content: Any, workspace_id: str = "ws_abc123") -> Policy:
    """A policy around ``content``, allowed unsigned: for tests of the content model, not of integrity."""
    document = {"policy_id": "pol_test", "workspace_id": workspace_id, "version": "1", "status": "active",
                "hash": content_hash(content), "content": content}
    return parse_policy(document, Keyring(keys={}), allow_unsigned=True)


def decision_of(document: Mapping[str, Any]) -> dict[str, Any]:
    """``{"allow", "rules"}`` (rule ids sorted) of a decision document of the contract."""
    return {"allow": document["allow"], "rules": sorted(v["rule"] for v in document["violations"])}
