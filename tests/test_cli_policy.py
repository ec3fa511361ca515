"""The seed's ``sekuire policy`` and ``sekuire keys`` commands, pull against a real HTTP server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sekuire.compiler import Keyring
from sekuire.compiler.cli import main
from sekuire.compiler.policy.keyring import fingerprint

from .conftest import VECTOR_POLICY, free_port


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_prints_the_verified_line(capsys, vector_keyring):
    code, out, err = run_cli(capsys, "policy", "validate", "--file", str(VECTOR_POLICY), "--keyring", str(vector_keyring.path))
    assert (code, out, err) == (0, "Policy policy_xyz (v1) integrity verified (hash/signature)\n", "")


def test_validate_honours_the_environment_keyring(capsys, vector_keyring, monkeypatch):
    monkeypatch.setenv("SEKUIRE_KEYRING", str(vector_keyring.path))
    assert run_cli(capsys, "policy", "validate", "--file", str(VECTOR_POLICY))[0] == 0


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("content_changed", "/hash: hash mismatch"),
        ("version_rolled_back", "/signature: bad signature"),
        ("workspace_swapped", "/signature: bad signature"),
        ("signature_flipped", "/signature: bad signature"),
        ("unknown_key", "/signing_key_id: unknown signing key 'key_unknown'"),
        ("hash_not_lowercase_hex", "/hash: hash mismatch"),
        ("signature_missing", "/signature: unsigned policy"),
    ],
)
def test_each_invalid_vector_fails_with_one_line(capsys, tmp_path, envelope_vectors, vector_keyring, name, fragment):
    case = next(c for c in envelope_vectors["invalid"] if c["name"] == name)
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(case["policy"]))
    code, out, err = run_cli(capsys, "policy", "validate", "--file", str(path), "--keyring", str(vector_keyring.path))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: ")
    assert fragment in err


SEED_SHOW_LINES = [
    "Policy ID: policy_xyz",
    "Workspace ID: ws_abc123",
    "Version: 1",
    "Status: active",
    "Hash: 4fcc7998...",
    "Signature: d6b06312...",
    "Signing Key: key_test_1",
]


def test_show_prints_the_seed_lines_then_the_summary_then_the_result(capsys, vector_keyring):
    code, out, err = run_cli(capsys, "policy", "show", "--file", str(VECTOR_POLICY), "--keyring", str(vector_keyring.path))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:7] == SEED_SHOW_LINES
    assert lines[7:] == [
        "Models:      providers openai, anthropic; models gpt-4o, claude-3-opus",
        "Tools:       allowed web_search, file_*, github:create_issue; denied file_delete",
        "Network:     TLS required; allowed api.openai.com, *.anthropic.com; blocked evil.anthropic.com",
        "Filesystem:  allowed /workspace/*, /tmp/*; blocked /workspace/secrets/*; extensions .txt, .md, .json; any operation",
        "APIs:        allowed openai, github; blocked (none)",
        "Rate limits: requests 60/min, 1000/h; tokens 40000/min, 1000000/h",
        "Compliance:  soc2, audit logging required, data residency eu",
        "Integrity: verified (hash/signature, key key_test_1)",
    ]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("content_changed", "/hash: hash mismatch"),
        ("signature_flipped", "/signature: bad signature"),
        ("unknown_key", "/signing_key_id: unknown signing key 'key_unknown'"),
        ("signature_missing", "/signature: unsigned policy"),
    ],
)
def test_show_displays_a_policy_it_cannot_verify_and_exits_1(capsys, tmp_path, envelope_vectors, vector_keyring, name, reason):
    case = next(c for c in envelope_vectors["invalid"] if c["name"] == name)
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(case["policy"]))
    code, out, err = run_cli(capsys, "policy", "show", "--file", str(path), "--keyring", str(vector_keyring.path))
    lines = out.splitlines()
    assert code == 1 and err == ""
    assert lines[:4] == SEED_SHOW_LINES[:4] and lines[4] == "Hash: 4fcc7998..."
    assert lines[5] == ("Signature: (none)" if name == "signature_missing" else f"Signature: {case['policy']['signature'][:8]}...")
    assert lines[6] == f"Signing Key: {case['policy']['signing_key_id']}"
    assert lines[-1].startswith("Integrity: NOT verified (") and reason in lines[-1]
    assert sum(line.startswith("Integrity:") for line in lines) == 1


def test_show_without_any_keyring_still_displays(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SEKUIRE_KEYRING", str(tmp_path / "absent.json"))
    code, out, _ = run_cli(capsys, "policy", "show", "--file", str(VECTOR_POLICY))
    assert code == 1 and out.splitlines()[:7] == SEED_SHOW_LINES
    assert out.splitlines()[-1].startswith("Integrity: NOT verified (")


def test_show_unsigned_with_allow_unsigned_says_so(capsys, tmp_path, envelope_vectors, vector_keyring):
    case = next(c for c in envelope_vectors["invalid"] if c["name"] == "signature_missing")
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(case["policy"]))
    code, out, _ = run_cli(capsys, "policy", "show", "--file", str(path), "--keyring", str(vector_keyring.path), "--allow-unsigned")
    assert code == 0 and out.splitlines()[-1] == "Integrity: hash verified, UNSIGNED (accepted with --allow-unsigned)"


def test_show_models_only_policy_says_rate_limits_unlimited(capsys, tmp_path, envelope_vectors, vector_seed, vector_keyring):
    from .backend_server import signed_policy

    document = signed_policy(envelope_vectors["valid"], vector_seed, content={"agent": {"models": {
        "allowed_models": ["gpt-4", "claude-3-opus"], "allowed_providers": ["openai", "anthropic"]}}})
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(document))
    code, out, _ = run_cli(capsys, "policy", "show", "--file", str(path), "--keyring", str(vector_keyring.path))
    assert code == 0
    assert "Rate limits: none (unlimited)" in out.splitlines()
    assert "Tools:       none allowed (no tools section)" in out.splitlines()


def test_show_json_carries_the_full_values(capsys, tmp_path, envelope_vectors, vector_keyring):
    for flag in ("--format=json", "--json"):
        code, out, _ = run_cli(capsys, "policy", "show", "--file", str(VECTOR_POLICY), "--keyring", str(vector_keyring.path), flag)
        shown = json.loads(out)
        valid = envelope_vectors["valid"]
        assert code == 0
        assert {k: shown[k] for k in valid} == valid
        assert shown["integrity"] == {"verified": True, "signature_status": "verified", "error": None, "reason": None}
    case = next(c for c in envelope_vectors["invalid"] if c["name"] == "signature_flipped")
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(case["policy"]))
    code, out, _ = run_cli(capsys, "policy", "show", "--file", str(path), "--keyring", str(vector_keyring.path), "--format", "json")
    shown = json.loads(out)
    assert code == 1 and shown["signature"] == case["policy"]["signature"]
    assert shown["integrity"]["verified"] is False and shown["integrity"]["error"] == "bad_signature"


def test_show_escapes_control_characters(capsys, tmp_path, envelope_vectors, vector_keyring):
    document = json.loads(json.dumps(envelope_vectors["valid"]))
    document["status"] = "active\x1b[2J\nIntegrity: verified"
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(document))
    code, out, _ = run_cli(capsys, "policy", "show", "--file", str(path), "--keyring", str(vector_keyring.path))
    assert code == 0 and "\x1b" not in out
    assert "Status: active\\x1b[2J\\x0aIntegrity: verified" in out.splitlines()
    assert sum(line.startswith("Integrity:") for line in out.splitlines()) == 1


@pytest.mark.parametrize(("text", "fragment"), [("{not json", "policy.json: "), ('{"policy_id": 1}', "/policy_id")])
def test_show_refuses_a_file_that_is_not_a_policy(capsys, tmp_path, vector_keyring, text, fragment):
    path = tmp_path / "policy.json"
    path.write_text(text)
    code, out, err = run_cli(capsys, "policy", "show", "--file", str(path), "--keyring", str(vector_keyring.path))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {path}") and fragment in err


def test_keys_generate_sign_validate_round_trip(capsys, tmp_path, envelope_vectors):
    keyring_file = tmp_path / "keyring.json"
    prefix = tmp_path / "team"
    code, out, _ = run_cli(capsys, "keys", "generate", "--key-id", "team_1", "--out", str(prefix), "--keyring", str(keyring_file))
    assert code == 0 and "Pinned team_1" in out
    assert os.stat(f"{prefix}.key").st_mode & 0o077 == 0, "private key must not be readable by others"
    assert Keyring.load(keyring_file).get("team_1") == bytes.fromhex(Path(f"{prefix}.pub").read_text().strip())

    unsigned = {k: v for k, v in envelope_vectors["valid"].items() if k not in ("hash", "signature", "signing_key_id")}
    unsigned["version"] = "7"
    source = tmp_path / "draft.json"
    source.write_text(json.dumps(unsigned))
    signed = tmp_path / "policy.json"
    code, out, _ = run_cli(capsys, "policy", "sign", "--file", str(source), "--key", f"{prefix}.key", "--key-id", "team_1", "--out", str(signed))
    assert code == 0 and "Signed policy policy_xyz (v7) with key team_1" in out
    code, out, _ = run_cli(capsys, "policy", "validate", "--file", str(signed), "--keyring", str(keyring_file))
    assert out == "Policy policy_xyz (v7) integrity verified (hash/signature)\n"
    # the secret seed never appears in anything the command prints
    seed = Path(f"{prefix}.key").read_text().strip()
    assert seed not in out


def test_keys_generate_bundle_key_writes_pem(capsys, tmp_path):
    code, _, _ = run_cli(capsys, "keys", "generate", "--key-id", "b", "--algorithm", "ES256", "--out", str(tmp_path / "b"))
    assert code == 0
    assert (tmp_path / "b.pem").read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert (tmp_path / "b.pub.pem").read_text().startswith("-----BEGIN PUBLIC KEY-----")


# -- pull against a real static HTTP server ---------------------------------------------------------------------------


def _backend_tree(root: Path, policy: dict, workspace: str = "ws_abc123", public_key: str | None = None) -> Path:
    active = root / "v1" / "workspaces" / workspace / "policies"
    active.mkdir(parents=True)
    (active / "active").write_text(json.dumps(policy, indent=2, ensure_ascii=False), encoding="utf-8")
    keys = root / "v1" / "keys"
    keys.mkdir(parents=True)
    key = public_key or "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    (keys / "key_test_1").write_text(json.dumps({"key_id": "key_test_1", "algorithm": "ed25519", "public_key": key}))
    return root


def test_pull_verifies_pins_the_key_on_first_use_and_saves(capsys, tmp_path, http_server, envelope_vectors):
    url = http_server(_backend_tree(tmp_path / "site", envelope_vectors["valid"]))
    out_file = tmp_path / "work" / "policy.json"
    keyring_file = tmp_path / "keyring.json"
    code, out, err = run_cli(
        capsys, "policy", "pull", "--workspace", "ws_abc123", "--backend", url, "--out", str(out_file), "--keyring", str(keyring_file),
        "--trust-on-first-use",
    )
    assert code == 0, err
    fp = fingerprint(bytes.fromhex(envelope_vectors["key"]["public_key_hex"]))
    assert out == (
        f"Trusted signing key key_test_1 (ed25519 {fp}) on first use (--trust-on-first-use), saved in {keyring_file}\n"
        f"Saved active policy policy_xyz (v1) for workspace ws_abc123 to {out_file}\nSignature: verified\n"
    )
    assert json.loads(out_file.read_text(encoding="utf-8")) == envelope_vectors["valid"]
    assert Keyring.load(keyring_file).get("key_test_1").hex().startswith("03a107bf")
    # the saved file verifies on its own with the pinned key
    assert run_cli(capsys, "policy", "validate", "--file", str(out_file), "--keyring", str(keyring_file))[0] == 0


@pytest.mark.parametrize("case_name", ["content_changed", "signature_flipped", "workspace_swapped", "version_rolled_back"])
def test_pull_refuses_tampered_policies_and_writes_nothing(capsys, tmp_path, http_server, envelope_vectors, case_name):
    case = next(c for c in envelope_vectors["invalid"] if c["name"] == case_name)
    url = http_server(_backend_tree(tmp_path / "site", case["policy"]))
    out_file = tmp_path / "policy.json"
    keyring_file = tmp_path / "keyring.json"
    code, out, err = run_cli(
        capsys, "policy", "pull", "--workspace", "ws_abc123", "--backend", url, "--out", str(out_file), "--keyring", str(keyring_file),
        "--trust-on-first-use",
    )
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "/v1/workspaces/ws_abc123/policies/active" in err
    assert not out_file.exists() and not keyring_file.exists()
    assert list(tmp_path.glob(".policy.json.*")) == []


def test_pull_never_replaces_a_pinned_key(capsys, tmp_path, http_server, envelope_vectors):
    """A backend that rotates key_test_1 to another key cannot get its policy accepted."""
    from nacl.signing import SigningKey
    from sekuire.compiler import sign_document

    attacker = SigningKey.generate()
    forged = sign_document(dict(envelope_vectors["valid"]), bytes(attacker), "key_test_1")
    url = http_server(_backend_tree(tmp_path / "site", forged, public_key=bytes(attacker.verify_key).hex()))
    keyring_file = tmp_path / "keyring.json"
    Keyring(keys={"key_test_1": bytes.fromhex(envelope_vectors["key"]["public_key_hex"])}, path=keyring_file).save()
    before = keyring_file.read_bytes()
    code, _, err = run_cli(
        capsys, "policy", "pull", "--workspace", "ws_abc123", "--backend", url, "--out", str(tmp_path / "p.json"), "--keyring", str(keyring_file)
    )
    assert code == 1 and "bad signature" in err
    assert keyring_file.read_bytes() == before and not (tmp_path / "p.json").exists()


def test_pull_refuses_another_workspaces_policy(capsys, tmp_path, http_server, envelope_vectors):
    url = http_server(_backend_tree(tmp_path / "site", envelope_vectors["valid"], workspace="ws_other"))
    code, _, err = run_cli(
        capsys, "policy", "pull", "--workspace", "ws_other", "--backend", url, "--out", str(tmp_path / "p.json"),
        "--keyring", str(tmp_path / "k.json"), "--trust-on-first-use",
    )
    assert code == 1 and "/workspace_id: backend answered with workspace 'ws_abc123', not 'ws_other'" in err
    assert not (tmp_path / "p.json").exists()


def test_pull_with_backend_down_fails_cleanly(capsys, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run_cli(
        capsys, "policy", "pull", "--workspace", "ws_abc123", "--backend", url, "--out", str(tmp_path / "p.json"),
        "--keyring", str(tmp_path / "k.json"),
    )
    assert code == 1 and "request failed: ConnectError" in err and err.count("\n") == 1
    assert not (tmp_path / "p.json").exists()


def test_pull_of_a_truncated_body_fails_cleanly(capsys, tmp_path, http_server, envelope_vectors):
    site = _backend_tree(tmp_path / "site", envelope_vectors["valid"])
    active = site / "v1" / "workspaces" / "ws_abc123" / "policies" / "active"
    active.write_bytes(active.read_bytes()[:200])
    url = http_server(site)
    code, _, err = run_cli(
        capsys, "policy", "pull", "--workspace", "ws_abc123", "--backend", url, "--out", str(tmp_path / "p.json"),
        "--keyring", str(tmp_path / "k.json"),
    )
    assert code == 1 and "malformed JSON" in err
    assert not (tmp_path / "p.json").exists()


def test_console_script_prints_no_traceback(tmp_path):
    bad = tmp_path / "policy.json"
    bad.write_text("{not json")
    sekuire = Path(sys.executable).parent / "sekuire"
    result = subprocess.run([str(sekuire), "policy", "validate", "--file", str(bad)], capture_output=True, text=True, cwd="/")
    assert result.returncode == 1
    assert result.stderr == f"error: {bad}: malformed JSON: Expecting property name enclosed in double quotes at line 1 column 2\n"
    assert "Traceback" not in result.stderr


# -- policy eval: every action type and the manifest entry point (issue 13.6) ---------------------------------


EXAMPLE_KEYRING = Path(__file__).resolve().parent.parent / "policies" / "examples" / "keyring.json"


def _eval(capsys, *extra: str) -> tuple[int, dict]:
    code = main(["policy", "eval", "--file", str(VECTOR_POLICY), "--keyring", str(EXAMPLE_KEYRING), *extra])
    return code, json.loads(capsys.readouterr().out)


def test_eval_decides_rate_limits_with_the_usage_given(capsys):
    action = '{"type": "rate_limit", "kind": "request", "amount": 1, "usage": {"minute": %d, "hour": %d}}'
    code, decision = _eval(capsys, "--action", action % (59, 59))
    assert code == 0 and decision["allow"] is True
    code, decision = _eval(capsys, "--action", action % (60, 60))
    assert code == 3 and [v["rule"] for v in decision["violations"]] == ["rate_limit.exceeded"]
    code, decision = _eval(capsys, "--action", '{"type": "rate_limit", "kind": "token", "amount": 10}')
    assert code == 0  # no usage given: nothing used yet


@pytest.mark.parametrize("usage", ['{"minute": -1, "hour": 0}', '{"minute": 1}', '"lots"', '{"minute": true, "hour": 0}'])
def test_eval_refuses_malformed_usage(capsys, usage):
    code = main(["policy", "eval", "--file", str(VECTOR_POLICY), "--keyring", str(EXAMPLE_KEYRING), "--action",
                 '{"type": "rate_limit", "kind": "request", "usage": %s}' % usage])
    err = capsys.readouterr().err
    assert code == 1 and "--action" in err and "usage" in err


def test_eval_answers_the_manifest_entry_point(capsys, tmp_path):
    (tmp_path / "tools.yml").write_text("- name: web_search\n- name: shell\n")
    manifest = tmp_path / "sekuire.yml"
    manifest.write_text("agent:\n  name: researcher\n  llm: {provider: openai, model: gpt-4o}\n  tools: tools.yml\n")
    code, decision = _eval(capsys, "--manifest", str(manifest))
    assert code == 3 and "warnings" in decision
    assert {v["rule"] for v in decision["violations"]} == {"manifest.tool_not_allowed"}  # shell is not allowed
