"""policy.json integrity against the shared vectors: canonical JSON, BLAKE3, Ed25519, distinct failures."""

from __future__ import annotations

import copy
import json

import pytest
from sekuire.compiler import (
    BadSignatureError,
    HashMismatchError,
    IntegrityError,
    Keyring,
    PolicyFormatError,
    SekuireError,
    UnknownKeyError,
    UnsignedPolicyError,
    canonical_json,
    content_hash,
    load_policy,
    parse_policy,
    sign_document,
)
from sekuire.compiler.policy.integrity import signed_message

from .conftest import VECTOR_POLICY

EXPECTED_ERRORS = {
    "hash_mismatch": HashMismatchError,
    "bad_signature": BadSignatureError,
    "unknown_key": UnknownKeyError,
    "unsigned": UnsignedPolicyError,
}


def test_canonical_content_bytes(envelope_vectors):
    content = envelope_vectors["valid"]["content"]
    assert canonical_json(content) == envelope_vectors["canonical_content_utf8"].encode("utf-8")


def test_hash_and_signed_message(envelope_vectors):
    valid = envelope_vectors["valid"]
    assert content_hash(valid["content"]) == valid["hash"]
    message = signed_message(
        hash=valid["hash"], policy_id=valid["policy_id"], version=valid["version"], workspace_id=valid["workspace_id"]
    )
    assert message == envelope_vectors["signed_message_utf8"].encode("utf-8")


def test_signing_reproduces_the_vector_signature(envelope_vectors, vector_seed):
    valid = envelope_vectors["valid"]
    unsigned = {k: v for k, v in valid.items() if k not in ("hash", "signature")}
    signed = sign_document(unsigned, vector_seed, envelope_vectors["key"]["key_id"])
    # Ed25519 is deterministic: the same key and message give the same signature.
    assert signed["signature"] == valid["signature"]
    assert signed["hash"] == valid["hash"]


def test_valid_vector_verifies(envelope_vectors, vector_keyring):
    policy = parse_policy(envelope_vectors["valid"], vector_keyring)
    assert policy.signature_status == "verified"
    assert (policy.policy_id, policy.workspace_id, policy.version) == ("policy_xyz", "ws_abc123", "1")
    assert policy.content.permissions.network.allowed_domains == ("api.openai.com", "*.anthropic.com")


def test_vector_file_loads(vector_keyring):
    assert load_policy(VECTOR_POLICY, vector_keyring).hash.startswith("4fcc7998")


def _invalid_cases():
    vectors = json.loads((VECTOR_POLICY.parent / "policy-envelope.json").read_text(encoding="utf-8"))
    return [pytest.param(case, id=case["name"]) for case in vectors["invalid"]]


@pytest.mark.parametrize("case", _invalid_cases())
def test_each_invalid_vector_fails_with_its_own_error(case, vector_keyring):
    with pytest.raises(EXPECTED_ERRORS[case["expect"]]) as info:
        parse_policy(case["policy"], vector_keyring)
    assert info.value.code == case["expect"]
    assert "\n" not in str(info.value)


def test_invalid_vectors_have_distinct_messages(vector_keyring):
    messages = {}
    for case in _invalid_cases():
        case = case.values[0]
        with pytest.raises(SekuireError) as info:
            parse_policy(case["policy"], vector_keyring)
        messages.setdefault(case["expect"], set()).add(str(info.value))
    flat = [m for group in messages.values() for m in group]
    # one message per error class, never shared between classes
    assert len(flat) == len(set(flat)) and len(messages) == len(EXPECTED_ERRORS)


def test_unsigned_accepted_only_when_allowed(envelope_vectors, vector_keyring):
    document = copy.deepcopy(envelope_vectors["valid"])
    del document["signature"]
    with pytest.raises(UnsignedPolicyError):
        parse_policy(document, vector_keyring)
    policy = parse_policy(document, vector_keyring, allow_unsigned=True)
    assert policy.signature_status == "unsigned"
    # allow_unsigned never excuses a wrong hash
    document["content"]["rate_limits"]["requests"]["max_per_minute"] = 61
    with pytest.raises(HashMismatchError):
        parse_policy(document, vector_keyring, allow_unsigned=True)


def test_embedded_key_is_not_trusted_unless_opted_in(envelope_vectors):
    document = copy.deepcopy(envelope_vectors["valid"])
    document["signing_public_key"] = envelope_vectors["key"]["public_key_hex"]
    with pytest.raises(UnknownKeyError):
        parse_policy(document, Keyring())
    assert parse_policy(document, Keyring(), trust_embedded_key=True).signature_status == "verified"


def test_embedded_key_never_overrides_the_keyring(envelope_vectors, vector_keyring):
    """A document that brings its own key for a pinned key id still verifies against the pinned key."""
    from nacl.signing import SigningKey

    attacker = SigningKey.generate()
    document = copy.deepcopy(envelope_vectors["valid"])
    document["content"]["permissions"]["network"]["allowed_domains"].append("*")
    forged = sign_document(document, bytes(attacker), "key_test_1")
    forged["signing_public_key"] = bytes(attacker.verify_key).hex()
    with pytest.raises(BadSignatureError):
        parse_policy(forged, vector_keyring, trust_embedded_key=True)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_canonical_json_rejects_nan_and_infinity(bad):
    with pytest.raises(PolicyFormatError) as info:
        canonical_json({"x": bad})
    assert info.value.message.startswith("cannot be canonicalised: Out of range float values")


def test_canonical_json_sorts_by_code_point_and_keeps_utf8():
    assert canonical_json({"é": 1, "z": 2, "A": [True, None]}) == '{"A":[true,null],"z":2,"é":1}'.encode()


# -- verify_document itself: its defaults, messages and pointers (mutation testing found them untested) -------

def test_verify_document_defaults_are_the_safe_ones(envelope_vectors, vector_keyring):
    from sekuire.compiler.policy.integrity import verify_document

    unsigned = copy.deepcopy(envelope_vectors["valid"])
    del unsigned["signature"]
    with pytest.raises(UnsignedPolicyError) as info:
        verify_document(unsigned, vector_keyring)
    assert (info.value.message, info.value.pointer) == (
        "unsigned policy: no signature (allow unsigned policies only for development)", "/signature")
    embedded = copy.deepcopy(envelope_vectors["valid"])
    embedded["signing_public_key"] = envelope_vectors["key"]["public_key_hex"]
    with pytest.raises(UnknownKeyError):
        verify_document(embedded, Keyring())
    assert verify_document(copy.deepcopy(envelope_vectors["valid"]), vector_keyring) == "verified"


def test_verify_document_names_the_field_that_failed(envelope_vectors, vector_keyring):
    from sekuire.compiler.policy.integrity import verify_document

    no_key_id = copy.deepcopy(envelope_vectors["valid"])
    del no_key_id["signing_key_id"]
    with pytest.raises(UnsignedPolicyError) as info:
        verify_document(no_key_id, vector_keyring)
    assert (info.value.message, info.value.pointer) == ("signed policy names no signing_key_id", "/signing_key_id")
    for bad_hash in ("0" * 64, "\ud800" * 64, "é" * 64):  # a lone surrogate or non-ASCII: a mismatch, not a crash
        document = copy.deepcopy(envelope_vectors["valid"])
        document["hash"] = bad_hash
        with pytest.raises(HashMismatchError) as info:
            verify_document(document, vector_keyring)
        assert (info.value.message, info.value.pointer) == (
            "hash mismatch: content does not match the hash field", "/hash")


def test_sign_document_names_its_key(envelope_vectors, vector_seed):
    document = copy.deepcopy(envelope_vectors["valid"])
    for field in ("signature", "signing_key_id", "hash"):
        document.pop(field, None)
    signed = sign_document(document, vector_seed, "key_other")
    assert signed["signing_key_id"] == "key_other" and "signing_key_id" not in document


def test_verify_document_refuses_each_key_and_signature_failure_in_its_own_words(envelope_vectors, vector_keyring):
    from sekuire.compiler.policy.integrity import verify_document

    def refusal(document: dict, keyring: Keyring = vector_keyring, **options: bool) -> tuple[type, str, str | None]:
        with pytest.raises(IntegrityError) as info:
            verify_document(document, keyring, **options)
        return type(info.value), info.value.message, info.value.pointer

    valid = envelope_vectors["valid"]
    assert refusal(copy.deepcopy(valid), Keyring()) == (
        UnknownKeyError, "unknown signing key 'key_test_1': not in the trusted keyring", "/signing_key_id")
    assert refusal({**copy.deepcopy(valid), "signature": valid["signature"].upper()}) == (
        BadSignatureError, "bad signature: expected 128 lower-case hex digits", "/signature")
    assert refusal({**copy.deepcopy(valid), "signature": "0" * 128}) == (
        BadSignatureError,
        "bad signature: not made by key 'key_test_1' over this policy_id, workspace_id, version and hash", "/signature")
    # The embedded key, trusted only on request, and then only when it is a hex Ed25519 key.
    for embedded in ("zz", 7, None):
        assert refusal({**copy.deepcopy(valid), "signing_public_key": embedded}, Keyring(), trust_embedded_key=True)[0] \
            is UnknownKeyError
    trusted = {**copy.deepcopy(valid), "signing_public_key": envelope_vectors["key"]["public_key_hex"]}
    assert verify_document(trusted, Keyring(), trust_embedded_key=True) == "verified"
