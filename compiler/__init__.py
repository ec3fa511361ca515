"""sekuire.compiler: verify workspace policy.json files and compile them into OPA bundles.

Every public name is imported on first use: ``sekuire --help`` and an agent
that only enforces never load what they do not call (pydantic models, Jinja2,
the bundle-signing stack of PyJWT and cryptography).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
from .version import __version__

_LAZY = {
    "canonical_json": ".policy.canonical",
    "content_hash": ".policy.integrity",
    "sign_document": ".policy.integrity",
    "verify_document": ".policy.integrity",
    "Keyring": ".policy.keyring",
    "Policy": ".policy.document",
    "load_policy": ".policy.document",
    "parse_policy": ".policy.document",
    "Bundle": ".bundle.tarball",
    "build_bundle": ".bundle.tarball",
    "load_bundle": ".bundle.tarball",
    "read_bundle": ".bundle.tarball",
    "BundleSigner": ".bundle.signing",
    "VerifiedBundle": ".bundle.verify",
    "verify_bundle": ".bundle.verify",
    "CompiledPolicy": ".rego.compile",
    "compile_policy": ".rego.compile",
}

if TYPE_CHECKING:
    from .bundle.signing import BundleSigner
    from .bundle.tarball import Bundle, build_bundle, load_bundle, read_bundle
    from .bundle.verify import VerifiedBundle, verify_bundle
    from .policy.canonical import canonical_json
    from .policy.document import Policy, load_policy, parse_policy
    from .policy.integrity import content_hash, sign_document, verify_document
    from .policy.keyring import Keyring
    from .rego.compile import CompiledPolicy, compile_policy


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


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
