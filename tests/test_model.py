"""The policy model: JSON pointers in errors, unknown sections kept and reported, strict types."""

from __future__ import annotations

import copy
import json

import pytest
from sekuire.compiler import PolicyFormatError, content_hash, load_policy, parse_policy
from sekuire.compiler.policy.canonical import strict_loads


def _resigned(document, seed):
    from sekuire.compiler import sign_document

    return sign_document(document, seed, "key_test_1")


@pytest.mark.parametrize(
    ("path", "value", "pointer", "message"),
    [
        (("permissions", "network", "allowed_domains"), ["a.com", "b.com", 3], "/content/permissions/network/allowed_domains/2", "expected string"),
        (("permissions", "network", "enabled"), "true", "/content/permissions/network/enabled", "expected boolean"),
        (("rate_limits", "requests", "max_per_minute"), "60", "/content/rate_limits/requests/max_per_minute", "expected integer"),
        (("rate_limits", "requests", "max_per_minute"), -1, "/content/rate_limits/requests/max_per_minute", "must be >= 0"),
        (("permissions", "filesystem"), [], "/content/permissions/filesystem", "expected object"),
        (("agent", "models", "allowed_models"), "gpt-4o", "/content/agent/models/allowed_models", "expected array"),
        (("permissions", "network", "blocked_domain"), ["x.com"], "/content/permissions/network/blocked_domain", "unknown field"),
        # A misspelt compliance key used to be accepted silently, leaving audit logging off.
        (("compliance", "require_audit_loging"), True, "/content/compliance/require_audit_loging", "unknown field"),
        (("compliance", "note"), 1, "/content/compliance/note", "expected string"),
    ],
)
def test_wrong_types_name_the_json_pointer(envelope_vectors, vector_seed, vector_keyring, path, value, pointer, message):
    document = copy.deepcopy(envelope_vectors["valid"])
    target = document["content"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(PolicyFormatError) as info:
        parse_policy(_resigned(document, vector_seed), vector_keyring)
    assert info.value.pointer == pointer
    assert str(info.value) == f"{pointer}: {message}"


def test_unknown_top_level_section_is_kept_and_reported(envelope_vectors, vector_seed, vector_keyring):
    document = copy.deepcopy(envelope_vectors["valid"])
    document["content"]["sandbox"] = {"level": "strict"}
    policy = parse_policy(_resigned(document, vector_seed), vector_keyring)
    assert policy.unknown_sections == {"sandbox": {"level": "strict"}}
    assert policy.warnings == ("/content/sandbox: unknown section kept but not enforced",)
    assert policy.raw_content["sandbox"] == {"level": "strict"}


def test_missing_envelope_field(envelope_vectors, vector_keyring):
    document = copy.deepcopy(envelope_vectors["valid"])
    del document["workspace_id"]
    with pytest.raises(PolicyFormatError) as info:
        parse_policy(document, vector_keyring)
    assert info.value.pointer == "/workspace_id"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{", "malformed JSON"),
        (b'{"a": 1, "a": 2}', "duplicate key"),
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    ],
)
def test_strict_loads_errors(raw, fragment):
    with pytest.raises(PolicyFormatError) as info:
        strict_loads(raw)
    assert fragment in str(info.value)


def test_too_deep_json_says_so_exactly():
    with pytest.raises(PolicyFormatError) as info:
        strict_loads(b"[" * 100000 + b"]" * 100000)
    assert info.value.message == "malformed JSON: nested too deeply"


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        (lambda p: p.write_bytes(b'{"policy_id": '), "malformed JSON"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: None, "No such file"),
        (lambda p: p.write_bytes(b" " * (17 << 20)), "larger than the 16 MiB limit"),
        (lambda p: p.write_text("[1, 2]"), "expected a JSON object"),
    ],
)
def test_bad_files_name_the_file(tmp_path, vector_keyring, setup, fragment):
    path = tmp_path / "policy.json"
    setup(path)
    with pytest.raises(PolicyFormatError) as info:
        load_policy(path, vector_keyring)
    assert str(info.value).startswith(str(path))
    assert fragment in str(info.value)


def test_content_hash_ignores_key_order(envelope_vectors):
    content = envelope_vectors["valid"]["content"]
    reordered = json.loads(json.dumps(content, sort_keys=True))
    assert content_hash(reordered) == envelope_vectors["valid"]["hash"]
