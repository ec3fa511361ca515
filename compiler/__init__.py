"""sekuire.compiler: verify workspace policy.json files and compile them into OPA bundles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .canonical import canonical_json
from .errors import (
    BackendError,
    BadSignatureError,
    BundleError,
    BundleVerificationError,
    CompileError,
    HashMismatchError,
    IntegrityError,
    KeyringError,
    PolicyError,
    PolicyFormatError,
    SekuireError,
    UnknownKeyError,
    UnsignedPolicyError,
)
from .integrity import content_hash, sign_document, verify_document
from .keyring import Keyring
from .policy import Policy, load_policy, parse_policy

__version__ = "0.1.0"

# Imported on first use: an agent that only enforces never loads Jinja2 or the bundle-signing stack
# (PyJWT, cryptography: about 20 MiB of the runtime's resident memory).
_LAZY = {
    "Bundle": ".bundle",
    "build_bundle": ".bundle",
    "load_bundle": ".bundle",
    "read_bundle": ".bundle",
    "BundleSigner": ".bundle_signing",
    "VerifiedBundle": ".bundle_signing",
    "verify_bundle": ".bundle_signing",
    "CompiledPolicy": ".compile",
    "compile_policy": ".compile",
}

if TYPE_CHECKING:
    from .bundle import Bundle, build_bundle, load_bundle, read_bundle
    from .bundle_signing import BundleSigner, VerifiedBundle, verify_bundle
    from .compile import CompiledPolicy, compile_policy


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "BackendError",
    "BadSignatureError",
    "Bundle",
    "BundleError",
    "BundleSigner",
    "BundleVerificationError",
    "CompileError",
    "CompiledPolicy",
    "HashMismatchError",
    "IntegrityError",
    "Keyring",
    "KeyringError",
    "Policy",
    "PolicyError",
    "PolicyFormatError",
    "SekuireError",
    "UnknownKeyError",
    "UnsignedPolicyError",
    "VerifiedBundle",
    "__version__",
    "build_bundle",
    "canonical_json",
    "compile_policy",
    "content_hash",
    "load_bundle",
    "load_policy",
    "parse_policy",
    "read_bundle",
    "sign_document",
    "verify_bundle",
    "verify_document",
]
