"""Bundle signing keys: the algorithms OPA verifies, and PEM keys or HMAC secrets loaded and checked against them."""

from __future__ import annotations

import binascii
import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from ..errors import BundleError
from ..files import read_limited

__all__ = [
    "DEFAULT_ALGORITHM",
    "DEFAULT_KEY_ID",
    "MAX_KEY_BYTES",
    "PrivateKey",
    "PublicKey",
    "SIGNING_ALGORITHMS",
    "check_algorithm",
    "load_private_key",
    "load_public_key",
    "load_verification_key",
    "quiet_key_length",
    "read_key_argument",
    "signing_key",
    "verification_key",
]

logger = logging.getLogger(__name__)

DEFAULT_ALGORITHM = "RS256"
DEFAULT_KEY_ID = "default"
#: What OPA verifies for bundles; RS256 is its default.
SIGNING_ALGORITHMS = (
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512",
    "HS256", "HS384", "HS512",
    "EdDSA",
)  # fmt: skip
MAX_KEY_BYTES = 1 << 20
_EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
_MIN_RSA_BITS = 2048
_K = TypeVar("_K")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
_PRIVATE_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)
_PUBLIC_TYPES = (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)
#: RFC 7518 section 3.2 asks for an HMAC secret at least as long as the hash; OPA takes shorter ones, so do we (with a warning).
_HMAC_ADVISED = {"HS256": 32, "HS384": 48, "HS512": 64}


@contextlib.contextmanager
def quiet_key_length() -> Iterator[None]:
    """Silence PyJWT's multi-line warning on short HMAC secrets: :func:`signing_key` logs one line of its own."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The HMAC key is")
        yield


def check_algorithm(alg: str) -> str:
    """Return ``alg`` if OPA verifies bundles signed with it; BundleError naming the choices otherwise."""
    if alg not in SIGNING_ALGORITHMS:
        raise BundleError(f"unsupported signing algorithm {alg!r}: OPA bundles take {', '.join(SIGNING_ALGORITHMS)}")
    return alg


def read_key_argument(value: str, *, alg: str | None) -> bytes:
    """An ``opa build --signing-key``/``--verification-key`` value: a key file, or for HS* the secret itself."""
    if os.path.isfile(value):
        try:
            return read_limited(value, MAX_KEY_BYTES)
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
    material = read_key_argument(value, alg=alg)
    if not (_is_pem(material) and os.path.isfile(value)):
        return material
    try:
        key = _public_key(material)
        verification_key(key, alg)
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
        return parse(read_limited(path, MAX_KEY_BYTES))
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
    if not isinstance(key, _PRIVATE_TYPES):
        raise BundleError(f"{_kind(key)} keys cannot sign OPA bundles: use an RSA, EC (P-256/384/521) or Ed25519 key")
    return key


def _public_key(pem: bytes) -> PublicKey:
    if b"PRIVATE KEY-----" in pem:
        raise BundleError("expected a public key, got a private key: verifiers never need the private key")
    key: PublicKeyTypes
    try:
        if b"-----BEGIN CERTIFICATE-----" in pem:
            key = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = serialization.load_pem_public_key(pem)
    except (ValueError, binascii.Error) as exc:
        raise BundleError(f"not a PEM public key ({_first_line(exc)})") from None
    if not isinstance(key, _PUBLIC_TYPES):
        raise BundleError(f"{_kind(key)} keys cannot verify OPA bundles: use an RSA, EC (P-256/384/521) or Ed25519 key")
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
    """An RSA key for RS*/PS*, an EC key on the matching curve for ES*, an Ed25519 key for EdDSA."""
    if alg[:2] in ("RS", "PS"):
        if not isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
            raise BundleError(f"{alg} needs an RSA key, got an {_kind(key)} key")
    elif alg in _EC_CURVES:
        if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
            raise BundleError(f"{alg} needs an EC key, got an {_kind(key)} key")
        if key.curve.name != _EC_CURVES[alg]:
            raise BundleError(f"{alg} needs an EC key on {_EC_CURVES[alg]}, got one on {key.curve.name}")
    elif alg == "EdDSA" and not isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        raise BundleError(f"EdDSA needs an Ed25519 key, got an {_kind(key)} key")


def _hmac_secret(material: bytes, alg: str) -> bytes:
    if not material:
        raise BundleError(f"{alg} needs a non-empty secret")
    if len(material) < _HMAC_ADVISED[alg]:
        logger.warning(
            "%s secret of %d bytes is shorter than the %d bytes RFC 7518 advises: OPA accepts it, but it is easier to guess",
            alg, len(material), _HMAC_ADVISED[alg],
        )
    if _is_pem(material):
        raise BundleError(f"{alg} takes a shared secret, not a PEM key: choose an RS/PS/ES algorithm for key pairs")
    return material


def signing_key(key: str | bytes | PrivateKey, alg: str) -> bytes | PrivateKey:
    if isinstance(key, (str, bytes)):
        material = key.encode("utf-8") if isinstance(key, str) else key
        if alg.startswith("HS"):
            return _hmac_secret(material, alg)
        key = _private_key(material)
    elif not isinstance(key, _PRIVATE_TYPES):
        raise BundleError(f"{alg} signs with an RSA, EC or Ed25519 private key, not a {type(key).__name__}")
    elif alg.startswith("HS"):
        raise BundleError(f"{alg} takes a shared secret, not a key object")
    _check_key_fits(key, alg)
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < _MIN_RSA_BITS:
        raise BundleError(f"RSA key of {key.key_size} bits is too weak: use at least {_MIN_RSA_BITS}")
    return key


def verification_key(key: str | bytes | PublicKey, alg: str | None) -> tuple[bytes | PublicKey, str]:
    """The key object and the algorithm to expect (when ``alg`` is None: RS256, the curve's ES*, EdDSA for Ed25519)."""
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
    elif not isinstance(key, _PUBLIC_TYPES):
        raise BundleError(f"expected an RSA, EC or Ed25519 public key, not a {type(key).__name__}")
    elif alg is not None and alg.startswith("HS"):
        raise BundleError(f"{alg} takes a shared secret, not a public key")
    if alg is None:
        if isinstance(key, ec.EllipticCurvePublicKey):
            alg = next((name for name, curve in _EC_CURVES.items() if curve == key.curve.name), None)
            if alg is None:
                raise BundleError(f"EC curve {key.curve.name} is not one OPA verifies (P-256, P-384, P-521)")
        elif isinstance(key, ed25519.Ed25519PublicKey):
            alg = "EdDSA"
        else:
            alg = DEFAULT_ALGORITHM
    _check_key_fits(key, alg)
    return key, alg
