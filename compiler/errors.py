"""Errors of ``sekuire.compiler``: one small tree, every message one line.

    SekuireError
    ├── PolicyError              a policy.json that cannot be used
    │   ├── PolicyFormatError    not JSON, wrong types, unknown fields, too large
    │   └── IntegrityError       the document is well formed but not trustworthy
    │       ├── HashMismatchError
    │       ├── BadSignatureError
    │       ├── UnknownKeyError
    │       └── UnsignedPolicyError
    ├── KeyringError             a keyring file that cannot be read, or a pinned key that would change
    ├── CompileError             a verified policy that cannot become Rego/data
    ├── BundleError              an OPA bundle that cannot be written, read or trusted
    │   └── BundleVerificationError
    └── BackendError             the policy backend could not be reached or answered badly

Every error has ``source`` (a file name or URL, or None) and ``pointer`` (a JSON
pointer into that document, or None); ``str(error)`` joins them into the single
line the CLI prints: control characters escaped, URL userinfo removed, cut at
``textsafe.MAX_MESSAGE`` characters (:mod:`.textsafe`), whatever the message quoted.
"""

from __future__ import annotations

from .textsafe import MAX_MESSAGE, clean, redact_text

__all__ = [
    "BackendError",
    "BadSignatureError",
    "BundleError",
    "BundleVerificationError",
    "CompileError",
    "HashMismatchError",
    "IntegrityError",
    "KeyringError",
    "PolicyError",
    "PolicyFormatError",
    "SekuireError",
    "UnknownKeyError",
    "UnsignedPolicyError",
]


class SekuireError(Exception):
    """Base of every error this project raises on purpose."""

    #: A short stable name of the error class, used in logs and test vectors.
    code = "error"

    def __init__(self, message: str, *, source: str | None = None, pointer: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.pointer = pointer

    def __str__(self) -> str:
        parts = [p for p in (self.source, self.pointer) if p]
        parts.append(self.message)
        return clean(redact_text(": ".join(parts)), MAX_MESSAGE)

    def with_source(self, source: str) -> SekuireError:
        """Name the file or URL the error is about (kept if already set)."""
        if self.source is None:
            self.source = source
        return self


class PolicyError(SekuireError):
    code = "policy_invalid"


class PolicyFormatError(PolicyError):
    code = "malformed"


class IntegrityError(PolicyError):
    code = "integrity"


class HashMismatchError(IntegrityError):
    code = "hash_mismatch"


class BadSignatureError(IntegrityError):
    code = "bad_signature"


class UnknownKeyError(IntegrityError):
    code = "unknown_key"


class UnsignedPolicyError(IntegrityError):
    code = "unsigned"


class KeyringError(SekuireError):
    code = "keyring"


class CompileError(SekuireError):
    code = "compile"


class BundleError(SekuireError):
    code = "bundle"


class BundleVerificationError(BundleError):
    code = "bundle_verification"


class BackendError(SekuireError):
    code = "backend"
