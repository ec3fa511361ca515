"""Bundle signing: the ``.signatures.json`` JWT that ``opa build --signing-key`` writes, with its claims.

Where we differ from ``opa build`` on purpose: files are listed in name order;
``.signatures.json`` is compact and has no ``"plugin": "_default"``; with extra
claims the header still carries ``kid`` and the payload ``keyid`` (OPA drops
both when given a claims file); claim names that differ from OPA's only in case
are refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import jwt

from ..errors import BundleError
from ..files import read_limited
from ..policy.canonical import canonical_json
from .gojson import (
    HASH_ALGORITHM,
    JSONNumber,
    Struct,
    file_digest,
    go_json,
    parse_json_exact,
)
from .keys import (
    DEFAULT_ALGORITHM,
    DEFAULT_KEY_ID,
    MAX_KEY_BYTES,
    PrivateKey,
    check_algorithm,
    read_key_argument,
    signing_key,
)
from .tarball import SIGNATURES_FILE

__all__ = ["BundleSigner", "PAYLOAD_FIELDS", "is_integer", "load_claims"]

# Go decodes the JWT payload into a struct whose field names match case-insensitively.
PAYLOAD_FIELDS = ("files", "iat", "iss", "keyid", "scope")
_INTEGER = re.compile(r"^-?(0|[1-9][0-9]*)$")


def load_claims(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Extra JWT claims from a JSON object file (``opa build --claims-file``), numbers kept as written."""
    source = os.fspath(path)
    try:
        claims = parse_json_exact(read_limited(path, MAX_KEY_BYTES))
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
        if name.casefold() in PAYLOAD_FIELDS and name != name.casefold():
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
    if "iat" in checked and not is_integer(checked["iat"]):
        raise BundleError("claim 'iat' must be an integer number of seconds")
    return checked, scope if scope is not None else claimed_scope


def is_integer(value: Any) -> bool:
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
        self._key = signing_key(key, alg)

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
        material = read_key_argument(source, alg=alg)
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
            Struct(name=name, hash=file_digest(name, content), algorithm=HASH_ALGORITHM)
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
