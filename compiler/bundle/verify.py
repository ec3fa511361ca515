"""Bundle verification: check a bundle's ``.signatures.json`` the way OPA does with ``--verification-key``.

``.signatures.json`` holds one JWT. Its payload lists every other file of the
bundle with ``name`` (tar member name without the leading ``/``), ``hash``
(hex) and ``algorithm`` (``SHA-256``), plus ``keyid`` and optional ``scope``;
its header names ``alg`` and ``kid``. Verification applies OPA's rules
(``bundle/verify.go``) and a few stricter ones that only ever refuse: exactly
one JWT, the expected algorithm, a valid signature, the expected scope (none
means none), every file listed and every listed file present, each digest
matching; HMAC secrets shorter than the hash, RSA keys under 2048 bits, MD5/SHA-1
file hashes and duplicate JSON keys are refused.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from dataclasses import dataclass
from typing import Any

import jwt

from ..errors import BundleError, BundleVerificationError, PolicyFormatError
from ..policy.canonical import strict_loads
from .gojson import JSONNumber, file_digest, go_json, parse_json_exact
from .keys import PublicKey, quiet_key_length, verification_key
from .roots import check_roots
from .signing import PAYLOAD_FIELDS, is_integer
from .tarball import SIGNATURES_FILE, Bundle

__all__ = ["FileSignature", "SignatureInfo", "VerifiedBundle", "decode_signature", "verify_bundle"]

_FILE_FIELDS = ("algorithm", "hash", "name")
_JWT = re.compile(r"^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$")
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")


@dataclass(frozen=True)
class FileSignature:
    name: str
    hash: str
    algorithm: str


@dataclass(frozen=True)
class SignatureInfo:
    """The decoded (not yet verified) JWT of a bundle's ``.signatures.json``."""

    token: str
    alg: str
    kid: str | None
    key_id: str | None
    scope: str | None
    issuer: str | None
    issued_at: int | None
    files: tuple[FileSignature, ...]
    header: dict[str, Any]
    claims: dict[str, Any]

    @property
    def signing_key_id(self) -> str | None:
        """The key id OPA would pick without a configured one: header ``kid``, else the ``keyid`` claim."""
        return self.kid or self.key_id


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose signature and every file digest checked out."""

    bundle: Bundle
    alg: str
    key_id: str | None
    scope: str | None
    files: tuple[str, ...]
    claims: dict[str, Any]

    @property
    def revision(self) -> str:
        """The verified manifest's revision."""
        return self.bundle.revision


def decode_signature(bundle: Bundle) -> SignatureInfo | None:
    """Decode the bundle's JWT without verifying it (for ``inspect``); None if the bundle is unsigned."""
    if bundle.signatures is None:
        return None
    try:
        return _decode(_single_token(bundle.signatures))
    except BundleError as exc:
        raise exc.with_source(bundle.source) from None


def verify_bundle(
    bundle: Bundle,
    *,
    key: str | bytes | PublicKey,
    alg: str | None = None,
    scope: str | None = None,
    key_id: str | None = None,
) -> VerifiedBundle:
    """Verify ``bundle`` as OPA does with ``--verification-key``; BundleVerificationError on any failure.

    ``key`` is a PEM public key (or key object), or the HMAC secret. ``alg``
    defaults to RS256 (OPA's default) for RSA keys and to the curve's ES* for EC
    keys. ``scope`` must equal the signed scope (None only matches none). With
    ``key_id``, a token that names a different key id is refused.
    """
    checked_key, expected_alg = verification_key(key, alg)
    try:
        return _verify(bundle, checked_key, expected_alg, scope, key_id)
    except BundleError as exc:
        failure = exc if isinstance(exc, BundleVerificationError) else BundleVerificationError(exc.message)
        raise failure.with_source(bundle.source) from None


def _verify(bundle: Bundle, key: bytes | PublicKey, alg: str, scope: str | None, key_id: str | None) -> VerifiedBundle:
    if bundle.signatures is None:
        raise BundleVerificationError(f"{SIGNATURES_FILE}: missing (the bundle is not signed)")
    info = _decode(_single_token(bundle.signatures))
    if info.alg != alg:
        raise BundleVerificationError(f"signature: algorithm {info.alg!r} does not match the expected {alg!r}")
    try:
        with quiet_key_length():
            jwt.PyJWS().decode_complete(info.token, key, algorithms=[alg])
    except jwt.InvalidSignatureError:
        raise BundleVerificationError("signature: invalid (not made by the verification key)") from None
    except jwt.DecodeError:
        # Header and payload decoded above: what PyJWT cannot decode is the signature segment.
        raise BundleVerificationError("signature: invalid (malformed signature segment)") from None
    except jwt.PyJWTError as exc:
        raise BundleVerificationError(f"signature: cannot be verified: {exc}") from None
    if key_id is not None and info.signing_key_id not in (None, key_id):
        raise BundleVerificationError(
            f"signature: key id {info.signing_key_id!r} does not match the expected {key_id!r}"
        )
    if (info.scope or "") != (scope or ""):
        raise BundleVerificationError(f"scope mismatch: signed for {_show(info.scope)}, expected {_show(scope)}")

    listed: dict[str, FileSignature] = {}
    for entry in info.files:
        if entry.name in listed:
            raise BundleVerificationError(f"{SIGNATURES_FILE}: {entry.name} listed twice")
        listed[entry.name] = entry
    for name, content in bundle.files.items():
        if name == SIGNATURES_FILE:
            continue
        signed = listed.get(name)
        if signed is None:
            raise BundleVerificationError(f"missing file in signatures: {name}")
        if not signed.algorithm:
            raise BundleVerificationError(f"{name}: no hash algorithm in signatures")
        if not _HEX.match(signed.hash):
            raise BundleVerificationError(f"{name}: signed hash is not hex")
        actual = file_digest(name, content, signed.algorithm)
        if not hmac.compare_digest(actual, signed.hash.lower()):
            raise BundleVerificationError(f"{name}: digest mismatch")
    extra = sorted(set(listed) - set(bundle.files))
    if extra:
        raise BundleVerificationError(f"file listed in signatures but not in the bundle: {extra[0]}")
    # A validly signed bundle whose roots do not cover its content is refused by OPA: so here.
    check_roots(bundle)
    return VerifiedBundle(
        bundle=bundle,
        alg=alg,
        key_id=info.signing_key_id,
        scope=info.scope,
        files=tuple(sorted(listed)),
        claims=info.claims,
    )


def _show(scope: str | None) -> str:
    return repr(scope) if scope else "no scope"


def _single_token(signatures: dict[str, Any]) -> str:
    plugin = signatures.get("plugin")
    if plugin not in (None, "", "_default"):
        raise BundleVerificationError(f"{SIGNATURES_FILE}: signing plugin {plugin!r} is not supported")
    tokens = signatures.get("signatures")
    if tokens is None or tokens == []:
        raise BundleVerificationError(f"{SIGNATURES_FILE}: missing JWT (expected exactly one)")
    if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
        raise BundleVerificationError(f"{SIGNATURES_FILE}: /signatures must be a list of JWT strings")
    if len(tokens) > 1:
        raise BundleVerificationError(f"{SIGNATURES_FILE}: multiple JWTs not supported (expected exactly one)")
    return str(tokens[0])


def _b64_json(segment: str, what: str) -> Any:
    try:
        return parse_json_exact(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError):
        raise BundleVerificationError(f"signature: malformed JWT {what} (not base64url)") from None
    except BundleError as exc:
        raise BundleVerificationError(f"signature: malformed JWT {what}: {exc.message}") from None


def _decode(token: str) -> SignatureInfo:
    match = _JWT.match(token)
    if match is None:
        raise BundleVerificationError("signature: malformed JWT (expected three base64url parts)")
    header = _b64_json(match.group(1), "header")
    payload = _b64_json(match.group(2), "payload")
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        raise BundleVerificationError("signature: malformed JWT header (no 'alg')")
    for unsupported in ("crit", "b64"):
        if unsupported in header:
            raise BundleVerificationError(f"signature: JWT header {unsupported!r} is not supported")
    if not isinstance(payload, dict):
        raise BundleVerificationError("signature: malformed JWT payload (not an object)")
    fields = _go_fields(payload, PAYLOAD_FIELDS, "payload")
    files = fields.get("files")
    if files is not None and not isinstance(files, list):
        raise BundleVerificationError("signature: payload 'files' must be a list")
    iat = fields.get("iat")
    if iat is not None and not is_integer(iat):
        raise BundleVerificationError("signature: payload 'iat' must be an integer")
    kid = header.get("kid")
    return SignatureInfo(
        token=token,
        alg=header["alg"],
        kid=kid if isinstance(kid, str) and kid else None,
        key_id=fields.get("keyid") or None,
        scope=fields.get("scope") or None,
        issuer=fields.get("iss") or None,
        issued_at=int(iat.literal if isinstance(iat, JSONNumber) else iat) if iat is not None else None,
        files=tuple(_file_entry(entry) for entry in files or ()),
        header=_plain(header),
        claims=_plain(payload),
    )


def _go_fields(obj: dict[str, Any], names: tuple[str, ...], what: str) -> dict[str, Any]:
    """The fields Go's decoder would fill, refusing names it would match case-insensitively (``Scope``, ``ſcope``)."""
    fields: dict[str, Any] = {}
    for key, value in obj.items():
        folded = key.casefold()
        if folded not in names:
            continue
        if key != folded:
            raise BundleVerificationError(f"signature: {what} field {key!r} is ambiguous (OPA reads it as {folded!r})")
        if folded not in ("files", "iat") and value is not None and not isinstance(value, str):
            raise BundleVerificationError(f"signature: {what} field {key!r} must be a string")
        if value is not None:
            fields[folded] = value
    return fields


def _file_entry(entry: Any) -> FileSignature:
    if not isinstance(entry, dict):
        raise BundleVerificationError("signature: payload 'files' entries must be objects")
    fields = _go_fields(entry, _FILE_FIELDS, "file entry")
    return FileSignature(fields.get("name", ""), fields.get("hash", ""), fields.get("algorithm", ""))


def _plain(value: Any) -> Any:
    """Exact-number JSON back to plain Python values (for callers that read claims)."""
    try:
        return strict_loads(go_json(value))
    except PolicyFormatError as exc:
        raise BundleVerificationError(f"signature: {exc.message}") from None
