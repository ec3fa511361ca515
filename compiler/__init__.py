"""sekuire.compiler: verify workspace policy.json files and compile them into OPA bundles."""

from __future__ import annotations

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

__all__ = [
    "BackendError",
    "BadSignatureError",
    "BundleError",
    "BundleVerificationError",
    "CompileError",
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
    "__version__",
    "canonical_json",
    "content_hash",
    "load_policy",
    "parse_policy",
    "sign_document",
    "verify_document",
]
