"""sekuire.compiler: verify workspace policy.json files and compile them into OPA bundles."""

from __future__ import annotations

from .bundle import Bundle, build_bundle, load_bundle, read_bundle
from .bundle_signing import BundleSigner, VerifiedBundle, verify_bundle
from .canonical import canonical_json
from .compile import CompiledPolicy, compile_policy
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
