"""Every refusal of a bundle's ``.signatures.json`` names what is wrong, word for word, and what is read is what OPA reads.

Tokens are made by hand (HS256 over a small bundle) so that each case breaks one thing: the plugin, the list of
tokens, the JWT's segments, its header, its payload, a file entry. Python mutants of ``compiler/bundle/verify.py``
that only changed a refusal's words, swapped a guard's ``or`` for ``and`` or stopped reading the payload early
survived the suites before this file (docs/security.md, "Mutation testing").
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from typing import Any

import pytest
from sekuire.compiler.bundle.gojson import file_digest
from sekuire.compiler.bundle.tarball import Bundle
from sekuire.compiler.bundle.verify import verify_bundle
from sekuire.compiler.errors import BundleVerificationError

SECRET = b"s" * 32
MANIFEST = b'{"roots":["x"]}'
MODULE = b"package x\n\nallow := true\n"
FILES = {".manifest": MANIFEST, "x/p.rego": MODULE}


def _b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _entries() -> list[dict[str, str]]:
    return [{"name": name, "hash": file_digest(name, content), "algorithm": "SHA-256"} for name, content in FILES.items()]


def _token(header: Any = None, payload: Any = None) -> str:
    header = {"alg": "HS256", "typ": "JWT"} if header is None else header
    payload = {"files": _entries()} if payload is None else payload
    signing_input = f"{_b64(header)}.{_b64(payload)}"
    signature = hmac.new(SECRET, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _bundle(signatures: dict[str, Any]) -> Bundle:
    return Bundle(files=dict(FILES), manifest={"roots": ["x"]}, signatures=signatures, source="b.tar.gz")


def _verify(signatures: dict[str, Any], **options: Any) -> Any:
    return verify_bundle(_bundle(signatures), key=SECRET, alg="HS256", **options)


def _refusal(signatures: dict[str, Any]) -> str:
    with pytest.raises(BundleVerificationError) as caught:
        _verify(signatures)
    return caught.value.message


def test_a_well_formed_token_verifies_and_an_empty_plugin_is_the_default():
    assert _verify({"signatures": [_token()]}).files == tuple(sorted(FILES))
    assert _verify({"plugin": "", "signatures": [_token()]}).alg == "HS256"  # OPA's default plugin, spelt empty
    assert "signing plugin 'other' is not supported" in _refusal({"plugin": "other", "signatures": [_token()]})


@pytest.mark.parametrize("tokens", ["eyJ.e30.x", {"a": 1}, [1]])
def test_signatures_that_are_not_a_list_of_strings(tokens):
    assert _refusal({"signatures": tokens}) == ".signatures.json: /signatures must be a list of JWT strings"


def _segments(header: str, payload: str) -> dict[str, Any]:
    return {"signatures": [f"{header}.{payload}.c2ln"]}


@pytest.mark.parametrize(("signatures", "message"), [
    (_segments("a", _b64({})), "signature: malformed JWT header (not base64url)"),
    (_segments(_b64({"alg": "HS256"}), "a"), "signature: malformed JWT payload (not base64url)"),
    (_segments(_b64([1]), _b64({})), "signature: malformed JWT header (no 'alg')"),
    (_segments(_b64({"alg": 1}), _b64({})), "signature: malformed JWT header (no 'alg')"),
    (_segments(_b64({"alg": "HS256", "b64": False}), _b64({})), "signature: JWT header 'b64' is not supported"),
    (_segments(_b64({"alg": "HS256", "crit": ["b64"]}), _b64({})), "signature: JWT header 'crit' is not supported"),
    (_segments(_b64({"alg": "HS256"}), _b64([1])), "signature: malformed JWT payload (not an object)"),
    (_segments(_b64({"alg": "HS256"}), _b64({"files": {"name": "x"}})), "signature: payload 'files' must be a list"),
    (_segments(_b64({"alg": "HS256"}), _b64({"scope": 5})), "signature: payload field 'scope' must be a string"),
    (_segments(_b64({"alg": "HS256"}), _b64({"files": ["x"]})), "signature: payload 'files' entries must be objects"),
    (_segments(_b64({"alg": "HS256"}), _b64({"files": [{"Name": "x"}]})),
     "signature: file entry field 'Name' is ambiguous (OPA reads it as 'name')"),
])
def test_each_malformed_part_is_named(signatures, message):
    assert _refusal(signatures) == message


def _entry_without(field: str) -> list[dict[str, str]]:
    return [{k: v for k, v in entry.items() if k != field or entry["name"] != "x/p.rego"} for entry in _entries()]


def test_a_file_entry_without_an_algorithm_or_a_hex_hash_is_refused_by_name():
    assert _refusal({"signatures": [_token(payload={"files": _entry_without("algorithm")})]}) == \
        "x/p.rego: no hash algorithm in signatures"
    not_hex = [{**entry, "hash": "zz"} if entry["name"] == "x/p.rego" else entry for entry in _entries()]
    assert _refusal({"signatures": [_token(payload={"files": not_hex})]}) == "x/p.rego: signed hash is not hex"


def test_the_header_kid_names_the_key_before_the_payload_keyid_and_only_as_a_non_empty_string():
    both = _verify({"signatures": [_token(header={"alg": "HS256", "kid": "from-header"},
                                          payload={"files": _entries(), "keyid": "from-payload"})]})
    assert both.key_id == "from-header"
    empty = _verify({"signatures": [_token(header={"alg": "HS256", "kid": ""},
                                           payload={"files": _entries(), "keyid": "from-payload"})]})
    assert empty.key_id == "from-payload"
    # A kid that is not a string is refused in PyJWT's words (stricter than OPA for null, which Go reads as "").
    for kid in (5, None):
        assert _refusal({"signatures": [_token(header={"alg": "HS256", "kid": kid})]}) == \
            "signature: cannot be verified: Key ID header parameter must be a string"


def test_fields_after_an_unknown_one_are_still_read():
    payload = {"aaa": 1, "scope": "team", "files": _entries()}  # first in any order the payload is read in
    assert _verify({"signatures": [_token(payload=payload)]}, scope="team").scope == "team"
    with pytest.raises(BundleVerificationError, match="scope mismatch: signed for 'team', expected no scope"):
        _verify({"signatures": [_token(payload=payload)]})


def test_what_verification_returns_cannot_be_changed_afterwards():
    verified = _verify({"signatures": [_token()]})
    with pytest.raises(dataclasses.FrozenInstanceError):
        verified.scope = "other"  # type: ignore[misc]
