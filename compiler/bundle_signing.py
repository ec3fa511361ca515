"""OPA bundle signatures: the ``.signatures.json`` that ``opa build --signing-key`` writes and OPA verifies.

``.signatures.json`` holds one JWT. Its payload lists every other file of the
bundle with ``name`` (tar member name without the leading ``/``), ``hash``
(hex) and ``algorithm`` (``SHA-256``), plus ``keyid`` and optional ``scope``;
its header names ``alg`` and ``kid``. ``.rego`` and other files are hashed as
raw bytes; ``data.json`` and ``.manifest`` in OPA's canonical JSON form: object
keys sorted by UTF-8 bytes, no whitespace, numbers exactly as written, strings
as Go's ``encoding/json`` writes them with HTML escaping off. So re-indenting a
data.json keeps its signature valid, changing a value does not.

Verification applies OPA's rules (``bundle/verify.go``) and a few stricter ones
that only ever refuse: exactly one JWT, the expected algorithm, a valid
signature, the expected scope (none means none), every file listed and every
listed file present, each digest matching. OPA does not accept EdDSA for
bundles, so neither signer nor verifier does.

Where we differ from ``opa build`` on purpose: files are listed in name order;
``.signatures.json`` is compact and has no ``"plugin": "_default"``; with extra
claims the header still carries ``kid`` and the payload ``keyid`` (OPA drops
both when given a claims file); HMAC secrets shorter than the hash, RSA keys
under 2048 bits, MD5/SHA-1 file hashes, duplicate JSON keys and claim names
that differ from OPA's only in case are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from .bundle import DATA_FILE, MANIFEST_FILE, SIGNATURES_FILE, Bundle
from .bundle_roots import check_roots
from .canonical import canonical_json, strict_loads
from .errors import BundleError, BundleVerificationError, PolicyFormatError
from .files import read_limited

__all__ = [
    "BundleSigner",
    "DEFAULT_ALGORITHM",
    "DEFAULT_KEY_ID",
    "FileSignature",
    "HASH_ALGORITHM",
    "JSONNumber",
    "PrivateKey",
    "PublicKey",
    "SIGNING_ALGORITHMS",
    "SignatureInfo",
    "VerifiedBundle",
    "canonical_form",
    "check_algorithm",
    "decode_signature",
    "file_digest",
    "go_json",
    "is_structured",
    "load_claims",
    "load_private_key",
    "load_public_key",
    "load_verification_key",
    "parse_json_exact",
    "verify_bundle",
]

DEFAULT_ALGORITHM = "RS256"
DEFAULT_KEY_ID = "default"
HASH_ALGORITHM = "SHA-256"
#: What OPA verifies for bundles; RS256 is its default.
SIGNING_ALGORITHMS = (
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512",
    "HS256", "HS384", "HS512",
)  # fmt: skip
_EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
_MIN_RSA_BITS = 2048
_MAX_KEY_BYTES = 1 << 20
_K = TypeVar("_K")
# The SHA-2 family of OPA's per-file hash algorithms; OPA also takes MD5 and SHA-1, which we refuse.
_HASHES = {
    "SHA-224": "sha224",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
    "SHA-512-224": "sha512_224",
    "SHA-512-256": "sha512_256",
}
# Go decodes the JWT payload into a struct whose field names match case-insensitively.
_PAYLOAD_FIELDS = ("files", "iat", "iss", "keyid", "scope")
_FILE_FIELDS = ("algorithm", "hash", "name")
_JWT = re.compile(r"^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$")
_INTEGER = re.compile(r"^-?(0|[1-9][0-9]*)$")
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


# --- OPA's canonical JSON -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JSONNumber:
    """A JSON number kept exactly as written (Go's ``json.Number``)."""

    literal: str

    def __str__(self) -> str:
        return self.literal


class _Struct(dict):  # type: ignore[type-arg]
    """An object written in insertion order, as Go writes a struct (maps are written sorted)."""


_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPE = re.compile('[\x00-\x1f"\\\\\u2028\u2029\ud800-\udfff]')
_ESCAPE_HTML = re.compile('[\x00-\x1f"\\\\\u2028\u2029\ud800-\udfff<>&]')
_ESCAPES = {
    '"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
    "\u2028": "\\u2028", "\u2029": "\\u2029", "<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
}  # fmt: skip


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _ESCAPES:
        return _ESCAPES[char]
    if "\ud800" <= char <= "\udfff":
        return "\ufffd"  # Go decodes a lone surrogate escape to U+FFFD and writes it literally
    return f"\\u{ord(char):04x}"


def _go_string(text: str, escape_html: bool) -> str:
    return '"' + (_ESCAPE_HTML if escape_html else _ESCAPE).sub(_escape, text) + '"'


def go_json(value: Any, *, escape_html: bool = False) -> bytes:
    """Compact JSON as Go's ``encoding/json`` writes it: maps sorted by key bytes, numbers as given."""
    parts: list[str] = []

    def emit(item: Any) -> None:
        if isinstance(item, JSONNumber):
            parts.append(item.literal)
        elif isinstance(item, str):
            parts.append(_go_string(item, escape_html))
        elif item is None:
            parts.append("null")
        elif isinstance(item, bool):
            parts.append("true" if item else "false")
        elif isinstance(item, int):
            parts.append(str(item))
        elif isinstance(item, float):
            try:
                parts.append(json.dumps(item, allow_nan=False))
            except ValueError:
                raise BundleError(f"cannot write {item!r} as JSON") from None
        elif isinstance(item, dict):
            pairs = [(_SURROGATE.sub("\ufffd", key), val) for key, val in item.items()]
            if not isinstance(item, _Struct):
                pairs.sort(key=lambda pair: pair[0])  # code point order is UTF-8 byte order
            parts.append("{")
            for index, (key, val) in enumerate(pairs):
                parts.append(("," if index else "") + _go_string(key, escape_html) + ":")
                emit(val)
            parts.append("}")
        elif isinstance(item, (list, tuple)):
            parts.append("[")
            for index, val in enumerate(item):
                if index:
                    parts.append(",")
                emit(val)
            parts.append("]")
        else:
            raise BundleError(f"cannot write a {type(item).__name__} as JSON")

    emit(value)
    return "".join(parts).encode("utf-8")


def _exact_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        key = _SURROGATE.sub("\ufffd", key)
        if key in result:
            # Go keeps the last duplicate, other parsers the first: refuse rather than guess.
            raise BundleError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise BundleError(f"{name} is not valid JSON")


def parse_json_exact(data: bytes) -> Any:
    """Parse UTF-8 JSON keeping every number literal (:class:`JSONNumber`); duplicate keys refused."""
    try:
        return json.loads(
            data.decode("utf-8"),
            parse_int=JSONNumber,
            parse_float=JSONNumber,
            parse_constant=_reject_constant,
            object_pairs_hook=_exact_object,
        )
    except UnicodeDecodeError as exc:
        raise BundleError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise BundleError("malformed JSON: nested too deeply") from None


def is_structured(name: str) -> bool:
    """Whether OPA hashes the file's canonical JSON form rather than its bytes."""
    return name.rsplit("/", 1)[-1] in (DATA_FILE, MANIFEST_FILE)


def canonical_form(name: str, content: bytes) -> bytes:
    """The bytes OPA hashes for file ``name``: canonical JSON for data.json/.manifest, else the content."""
    if not is_structured(name):
        return content
    try:
        return go_json(parse_json_exact(content))
    except BundleError as exc:
        raise BundleError(f"{name}: cannot be hashed: {exc.message}") from None


def file_digest(name: str, content: bytes, algorithm: str = HASH_ALGORITHM) -> str:
    """Lower-case hex digest of a bundle file as its signature lists it."""
    hash_name = _HASHES.get(algorithm)
    if hash_name is None:
        raise BundleError(f"{name}: unsupported hash algorithm {algorithm!r} (use {HASH_ALGORITHM})")
    return hashlib.new(hash_name, canonical_form(name, content)).hexdigest()


# --- keys -----------------------------------------------------------------------------------------


def check_algorithm(alg: str) -> str:
    """Return ``alg`` if OPA verifies bundles signed with it; BundleError naming the choices otherwise."""
    if alg.upper() in ("EDDSA", "ED25519"):
        raise BundleError("EdDSA is not accepted by OPA for bundle signatures: use RS256, PS256 or ES256")
    if alg not in SIGNING_ALGORITHMS:
        raise BundleError(f"unsupported signing algorithm {alg!r}: OPA bundles take {', '.join(SIGNING_ALGORITHMS)}")
    return alg


def _read_key_argument(value: str, *, alg: str | None) -> bytes:
    """An ``opa build --signing-key``/``--verification-key`` value: a key file, or for HS* the secret itself."""
    if os.path.isfile(value):
        try:
            return read_limited(value, _MAX_KEY_BYTES)
        except OSError as exc:
            raise BundleError(f"cannot read key: {exc.strerror or exc}", source=value) from None
    if alg is not None and alg.startswith("HS"):
        return value.encode("utf-8")
    # Not echoing ``value``: it may be a secret given without its HS* algorithm.
    raise BundleError("no such key file (an HMAC secret needs an HS256, HS384 or HS512 algorithm)")


def load_verification_key(value: str, *, alg: str | None = None) -> bytes | PublicKey:
    """What ``--verification-key VALUE`` names: a PEM public key file, or for HS* the secret (or a file holding it).

    Problems with a key file are BundleErrors naming the file; a secret never appears in a message.
    """
    material = _read_key_argument(value, alg=alg)
    if not (_is_pem(material) and os.path.isfile(value)):
        return material
    try:
        key = _public_key(material)
        _verification_key(key, alg)
    except BundleError as exc:
        raise exc.with_source(value) from None
    return key


def load_private_key(path: str | os.PathLike[str]) -> PrivateKey:
    """An RSA or EC private key from a PEM file; BundleError naming the file otherwise."""
    return _load_key(path, _private_key, "private key")


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """An RSA or EC public key (or certificate) from a PEM file; BundleError naming the file otherwise."""
    return _load_key(path, _public_key, "public key")


def _load_key(path: str | os.PathLike[str], parse: Callable[[bytes], _K], what: str) -> _K:
    source = os.fspath(path)
    try:
        return parse(read_limited(path, _MAX_KEY_BYTES))
    except OSError as exc:
        raise BundleError(f"cannot read {what}: {exc.strerror or exc}", source=source) from None
    except BundleError as exc:
        raise exc.with_source(source) from None


def _private_key(pem: bytes) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise BundleError("encrypted private keys are not supported: decrypt it first") from None
    except (ValueError, binascii.Error) as exc:
        raise BundleError(f"not a PEM private key ({_first_line(exc)})") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise BundleError(f"{_kind(key)} keys cannot sign OPA bundles: use an RSA or EC (P-256/384/521) key")
    return key


def _public_key(pem: bytes) -> PublicKey:
    if b"PRIVATE KEY-----" in pem:
        raise BundleError("expected a public key, got a private key: verifiers never need the private key")
    try:
        if b"-----BEGIN CERTIFICATE-----" in pem:
            key = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = serialization.load_pem_public_key(pem)
    except (ValueError, binascii.Error) as exc:
        raise BundleError(f"not a PEM public key ({_first_line(exc)})") from None
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise BundleError(f"{_kind(key)} keys cannot verify OPA bundles: use an RSA or EC (P-256/384/521) key")
    return key


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _kind(key: object) -> str:
    families = (
        ((rsa.RSAPrivateKey, rsa.RSAPublicKey), "RSA"),
        ((ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey), "EC"),
        ((ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey), "Ed25519"),
        ((ed448.Ed448PrivateKey, ed448.Ed448PublicKey), "Ed448"),
    )
    return next((label for kinds, label in families if isinstance(key, kinds)), type(key).__name__)


def _is_pem(material: bytes) -> bool:
    return material.lstrip().startswith(b"-----BEGIN")


def _check_key_fits(key: object, alg: str) -> None:
    """An RSA key for RS*/PS*, an EC key on the matching curve for ES*."""
    if alg[:2] in ("RS", "PS"):
        if not isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
            raise BundleError(f"{alg} needs an RSA key, got an {_kind(key)} key")
    elif alg in _EC_CURVES:
        if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
            raise BundleError(f"{alg} needs an EC key, got an {_kind(key)} key")
        if key.curve.name != _EC_CURVES[alg]:
            raise BundleError(f"{alg} needs an EC key on {_EC_CURVES[alg]}, got one on {key.curve.name}")


def _hmac_secret(material: bytes, alg: str) -> bytes:
    minimum = int(alg[2:]) // 8
    if len(material) < minimum:
        # RFC 7518 section 3.2: a shorter HMAC key is guessable; OPA would take it, we do not.
        raise BundleError(f"{alg} needs a secret of at least {minimum} bytes, got {len(material)}")
    if _is_pem(material):
        raise BundleError(f"{alg} takes a shared secret, not a PEM key: choose an RS/PS/ES algorithm for key pairs")
    return material


def _signing_key(key: str | bytes | PrivateKey, alg: str) -> bytes | PrivateKey:
    if isinstance(key, (str, bytes)):
        material = key.encode("utf-8") if isinstance(key, str) else key
        if alg.startswith("HS"):
            return _hmac_secret(material, alg)
        key = _private_key(material)
    elif not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise BundleError(f"{alg} signs with an RSA or EC private key, not a {type(key).__name__}")
    elif alg.startswith("HS"):
        raise BundleError(f"{alg} takes a shared secret, not a key object")
    _check_key_fits(key, alg)
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < _MIN_RSA_BITS:
        raise BundleError(f"RSA key of {key.key_size} bits is too weak: use at least {_MIN_RSA_BITS}")
    return key


def _verification_key(key: str | bytes | PublicKey, alg: str | None) -> tuple[bytes | PublicKey, str]:
    """The key object and the algorithm to expect (RS256, or the curve's ES*, when ``alg`` is None)."""
    if alg is not None:
        check_algorithm(alg)
    if isinstance(key, (str, bytes)):
        material = key.encode("utf-8") if isinstance(key, str) else key
        if alg is not None and alg.startswith("HS"):
            return _hmac_secret(material, alg), alg
        if not _is_pem(material):
            if alg is None:
                raise BundleError("an HMAC secret needs an explicit algorithm (HS256, HS384 or HS512)")
            raise BundleError(f"{alg} needs a PEM public key")
        key = _public_key(material)
    elif not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise BundleError(f"expected an RSA or EC public key, not a {type(key).__name__}")
    elif alg is not None and alg.startswith("HS"):
        raise BundleError(f"{alg} takes a shared secret, not a public key")
    if alg is None:
        if isinstance(key, ec.EllipticCurvePublicKey):
            alg = next((name for name, curve in _EC_CURVES.items() if curve == key.curve.name), None)
            if alg is None:
                raise BundleError(f"EC curve {key.curve.name} is not one OPA verifies (P-256, P-384, P-521)")
        else:
            alg = DEFAULT_ALGORITHM
    _check_key_fits(key, alg)
    return key, alg


# --- signing --------------------------------------------------------------------------------------


def load_claims(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Extra JWT claims from a JSON object file (``opa build --claims-file``), numbers kept as written."""
    source = os.fspath(path)
    try:
        claims = parse_json_exact(read_limited(path, _MAX_KEY_BYTES))
    except OSError as exc:
        raise BundleError(f"cannot read claims: {exc.strerror or exc}", source=source) from None
    except BundleError as exc:
        raise exc.with_source(source) from None
    if not isinstance(claims, dict):
        raise BundleError("claims file must hold a JSON object", source=source)
    return claims


def _check_claims(claims: Mapping[str, Any], key_id: str, scope: str | None) -> tuple[dict[str, Any], str | None]:
    """Claims OPA can decode, not fighting the signer's own ``files``, ``keyid`` and ``scope``."""
    checked = dict(claims)
    for name in checked:
        if name.casefold() in _PAYLOAD_FIELDS and name != name.casefold():
            raise BundleError(f"claim {name!r}: OPA reads it as {name.casefold()!r}; write it in lower case")
    if "files" in checked:
        raise BundleError("claim 'files' is the signer's own: it lists the bundle's files")
    for name in ("keyid", "scope", "iss"):
        if checked.get(name) is not None and not isinstance(checked[name], str):
            raise BundleError(f"claim {name!r} must be a string")
    if checked.get("keyid", key_id) != key_id:
        raise BundleError(f"claim 'keyid' is {checked['keyid']!r} but the signing key id is {key_id!r}")
    claimed_scope = checked.pop("scope", None)
    if scope is not None and claimed_scope is not None and claimed_scope != scope:
        raise BundleError(f"claim 'scope' is {claimed_scope!r} but the scope asked for is {scope!r}")
    if "iat" in checked and not _is_integer(checked["iat"]):
        raise BundleError("claim 'iat' must be an integer number of seconds")
    return checked, scope if scope is not None else claimed_scope


def _is_integer(value: Any) -> bool:
    if isinstance(value, JSONNumber):
        return bool(_INTEGER.match(value.literal)) and -(2**63) <= int(value.literal) < 2**63
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


class BundleSigner:
    """Signs bundle files as ``opa build --signing-key`` does: same JWT header and payload fields.

    ``key`` is a PEM private key (or key object) for RS*/PS*/ES*, the shared
    secret for HS*. ``scope`` and extra ``claims`` (``--claims-file``) join the
    payload. RS* and HS* signatures are deterministic, so the same files give
    the same signed bundle.
    """

    def __init__(
        self,
        key: str | bytes | PrivateKey,
        *,
        alg: str = DEFAULT_ALGORITHM,
        key_id: str = DEFAULT_KEY_ID,
        scope: str | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> None:
        self.alg = check_algorithm(alg)
        if not isinstance(key_id, str) or not key_id:
            raise BundleError("the signing key id must be a non-empty string")
        self.key_id = key_id
        self._claims, self.scope = _check_claims(claims or {}, key_id, scope)
        self._key = _signing_key(key, alg)

    @classmethod
    def from_file(
        cls,
        key: str | os.PathLike[str],
        *,
        alg: str = DEFAULT_ALGORITHM,
        key_id: str = DEFAULT_KEY_ID,
        scope: str | None = None,
        claims_file: str | os.PathLike[str] | None = None,
    ) -> BundleSigner:
        """Like ``opa build --signing-key KEY [--claims-file F]``: a PEM file, or for HS* a secret or its file."""
        source = os.fspath(key)
        material = _read_key_argument(source, alg=alg)
        claims = load_claims(claims_file) if claims_file is not None else None
        try:
            return cls(material, alg=alg, key_id=key_id, scope=scope, claims=claims)
        except BundleError as exc:
            if os.path.isfile(source):  # name the key file; never echo a secret given inline
                exc.with_source(source)
            raise exc from None

    def __repr__(self) -> str:
        return f"BundleSigner(alg={self.alg!r}, key_id={self.key_id!r}, scope={self.scope!r})"

    def payload(self, files: Mapping[str, bytes]) -> bytes:
        """The JWT payload over ``files`` (any ``.signatures.json`` among them is left out)."""
        entries = [
            _Struct(name=name, hash=file_digest(name, content), algorithm=HASH_ALGORITHM)
            for name, content in sorted(files.items())
            if name != SIGNATURES_FILE
        ]
        claims: dict[str, Any] = {**self._claims, "files": entries, "keyid": self.key_id}
        if self.scope is not None:
            claims["scope"] = self.scope
        return go_json(claims, escape_html=True)  # as Go's json.Marshal writes it

    def sign(self, files: Mapping[str, bytes]) -> bytes:
        """The ``.signatures.json`` content for a bundle made of ``files``."""
        try:
            token = jwt.PyJWS().encode(self.payload(files), self._key, algorithm=self.alg, headers={"kid": self.key_id})
        except jwt.PyJWTError as exc:
            raise BundleError(f"cannot sign: {exc}") from None
        return canonical_json({"signatures": [token]})


# --- verification ---------------------------------------------------------------------------------


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
    verification_key, expected_alg = _verification_key(key, alg)
    try:
        return _verify(bundle, verification_key, expected_alg, scope, key_id)
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
        entry = listed.get(name)
        if entry is None:
            raise BundleVerificationError(f"missing file in signatures: {name}")
        if not entry.algorithm:
            raise BundleVerificationError(f"{name}: no hash algorithm in signatures")
        if not _HEX.match(entry.hash):
            raise BundleVerificationError(f"{name}: signed hash is not hex")
        actual = file_digest(name, content, entry.algorithm)
        if not hmac.compare_digest(actual, entry.hash.lower()):
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
    return tokens[0]


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
    fields = _go_fields(payload, _PAYLOAD_FIELDS, "payload")
    files = fields.get("files")
    if files is not None and not isinstance(files, list):
        raise BundleVerificationError("signature: payload 'files' must be a list")
    iat = fields.get("iat")
    if iat is not None and not _is_integer(iat):
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
