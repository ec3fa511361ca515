"""The compiler's output against the real OPA: signed bundles activated, pulled over HTTP, and side by side with others.

Every OPA here is `opa run --server` on 127.0.0.1 with a port of its own, stopped by the fixture.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import httpx
import yaml
from sekuire.compiler import load_policy, sign_document
from sekuire.compiler.bundle.tarball import load_bundle
from sekuire.compiler.cli import main
from sekuire.runtime import EmbeddedEngine

from .conftest import ROOT, find_opa

EXAMPLES = ROOT / "policies" / "examples"
KEYRING = EXAMPLES / "keyring.json"
CODING = EXAMPLES / "coding-assistant.json"
RESEARCH = EXAMPLES / "research-agent.json"

ACTIONS = [
    {"type": "tool", "name": "web_search"},
    {"type": "tool", "name": "file_delete"},
    {"type": "network", "host": "docs.anthropic.com", "protocol": "https"},
    {"type": "network", "host": "anthropic.com.evil.net", "protocol": "https"},
    {"type": "filesystem", "path": "/workspace/../etc/passwd", "operation": "read"},
    {"type": "model", "name": "gemini-1.5-pro"},
    {"type": "api", "name": "github"},
]


def cli(*argv: str) -> int:
    return main([str(a) for a in argv])


def query(url: str, path: str, action: dict) -> dict:
    response = httpx.post(f"{url}/v1/data/{path}", json={"input": {"action": action, "context": {"agent": "a"}}}, timeout=10)
    response.raise_for_status()
    return response.json()["result"]


def test_opa_activates_the_signed_bundle_and_answers_the_contract(tmp_path, rsa_keys, opa_server, capsys):
    private, public = rsa_keys
    bundle = tmp_path / "bundle.tar.gz"
    assert cli("policy", "build", "--file", CODING, "--keyring", KEYRING, "--out", bundle, "--signing-key", private) == 0
    assert "signed RS256 (kid default)" in capsys.readouterr().out

    policy = load_policy(CODING, KEYRING)
    embedded = EmbeddedEngine.from_bundle(bundle, verification_key=public.read_bytes())
    with opa_server(["--bundle", str(bundle), "--verification-key", str(public)]) as opa:
        for action in ACTIONS:
            result = query(opa.url, "sekuire/workspaces/ws_abc123/decision", action)
            assert set(result) == {"allow", "violations", "policy"}
            assert result["policy"] == {"policy_id": policy.policy_id, "version": policy.version, "hash": policy.hash}
            assert result["allow"] is (result["violations"] == [])
            assert all(set(v) == {"rule", "message"} for v in result["violations"])
            # the same bundle gives the same decision in-process
            expected = embedded.evaluate(
                "sekuire/workspaces/ws_abc123/decision", {"action": action, "context": {"agent": "a"}}
            )
            assert result == expected, action
        assert query(opa.url, "sekuire/workspaces/ws_abc123/decision", ACTIONS[0])["allow"] is True
        denied = query(opa.url, "sekuire/workspaces/ws_abc123/decision", ACTIONS[1])
        assert [v["rule"] for v in denied["violations"]] == ["tool.blocked"]
        # the manifest revision OPA reports is the one the compiler wrote
        status = httpx.get(f"{opa.url}/v1/data/sekuire/workspaces/ws_abc123/decision?provenance=true", timeout=10).json()
        revisions = {b["revision"] for b in status["provenance"]["bundles"].values()}
        assert revisions == {policy.revision}
    embedded.close()


def test_opa_refuses_the_bundle_with_another_key(tmp_path, rsa_keys, opa_bin):
    private, _ = rsa_keys
    other = tmp_path / "other"
    assert cli("keys", "generate", "--key-id", "default", "--algorithm", "RS256", "--out", other) == 0
    bundle = tmp_path / "bundle.tar.gz"
    assert cli("policy", "build", "--file", CODING, "--keyring", KEYRING, "--out", bundle, "--signing-key", private) == 0
    result = subprocess.run(
        [opa_bin, "eval", "--bundle", str(bundle), "--verification-key", f"{other}.pub.pem", "data.sekuire"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "verification" in result.stderr.lower()


def test_opa_pulls_published_bundles_over_http_with_the_generated_config(
    tmp_path, rsa_keys, opa_server, http_server, capsys
):
    """publish -> any static HTTP server -> OPA configured by `sekuire opa-config`, beside an unrelated bundle."""
    private, public = rsa_keys
    site = tmp_path / "site"
    assert cli("publish", "--site", site, "--file", CODING, "--file", RESEARCH, "--keyring", KEYRING, "--signing-key", private) == 0

    # The fleet's own, unrelated bundle (its own root, unsigned) is served by the same server.
    own = tmp_path / "own"
    (own / "acme").mkdir(parents=True)
    (own / "acme" / "policy.rego").write_text("package acme\n\nallow if input.user == \"alice\"\n")
    (own / ".manifest").write_text(json.dumps({"roots": ["acme"], "revision": "acme-1"}))
    subprocess.run([find_opa(), "build", "-b", str(own), "-o", str(site / "bundles" / "acme.tar.gz")],
                   check=True, capture_output=True)

    url = http_server(site)
    config_file = tmp_path / "opa.yaml"
    assert cli(
        "opa-config", "--service-url", url, "--workspace", "ws_abc123", "--workspace", "ws-research-eu",
        "--verification-key", public, "--out", config_file,
    ) == 0
    config = yaml.safe_load(config_file.read_text())
    config["bundles"]["acme"] = {"service": "sekuire", "resource": "bundles/acme.tar.gz"}
    config_file.write_text(yaml.safe_dump(config))

    # start() waits until /health?bundles is 200: every configured bundle downloaded, verified and activated
    with opa_server(["--config-file", str(config_file)]).start(health_query="?bundles") as opa:
        coding = query(opa.url, "sekuire/workspaces/ws_abc123/decision", {"type": "tool", "name": "file_delete"})
        assert [v["rule"] for v in coding["violations"]] == ["tool.blocked"]
        research = query(opa.url, "sekuire/workspaces/ws-research-eu/decision", {"type": "tool", "name": "web_search"})
        assert research["policy"]["policy_id"] == load_policy(RESEARCH, KEYRING).policy_id
        acme = httpx.post(f"{opa.url}/v1/data/acme/allow", json={"input": {"user": "alice"}}, timeout=10).json()
        assert acme["result"] is True

    # agents read the same tree: pull verifies the published policy
    out = tmp_path / "pulled.json"
    assert cli("policy", "pull", "--workspace", "ws_abc123", "--backend", url, "--out", out, "--keyring", tmp_path / "k.json",
               "--trust-on-first-use") == 0
    assert json.loads(out.read_text()) == json.loads(CODING.read_text())


def test_two_workspaces_and_an_unrelated_bundle_coexist_from_files(tmp_path, rsa_keys, opa_server):
    private, public = rsa_keys
    bundles = []
    for source in (CODING, RESEARCH):
        out = tmp_path / f"{source.stem}.tar.gz"
        assert cli("policy", "build", "--file", source, "--keyring", KEYRING, "--out", out, "--signing-key", private) == 0
        bundles += ["--bundle", str(out)]
    with opa_server([*bundles, "--verification-key", str(public)]) as opa:
        a = query(opa.url, "sekuire/workspaces/ws_abc123/decision", {"type": "model", "name": "gpt-4o"})
        b = query(opa.url, "sekuire/workspaces/ws-research-eu/decision", {"type": "model", "name": "gpt-4o"})
        assert a["policy"]["policy_id"] != b["policy"]["policy_id"]
        roots = {tuple(load_bundle(Path(p)).roots) for p in bundles[1::2]}
        assert roots == {("sekuire/workspaces/ws_abc123",), ("sekuire/workspaces/ws-research-eu",)}


def test_build_refuses_unverifiable_policies_and_writes_nothing(tmp_path, capsys, envelope_vectors):
    tampered = copy.deepcopy(envelope_vectors["valid"])
    tampered["content"]["permissions"]["network"]["allowed_domains"].append("*")
    source = tmp_path / "policy.json"
    source.write_text(json.dumps(tampered))
    out = tmp_path / "bundle.tar.gz"
    assert cli("policy", "build", "--file", source, "--keyring", KEYRING, "--out", out) == 1
    assert "hash mismatch" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == [source]


def test_build_names_the_pointer_of_an_uncompilable_pattern(tmp_path, capsys, envelope_vectors, vector_seed):
    document = copy.deepcopy(envelope_vectors["valid"])
    document["content"]["permissions"]["network"]["allowed_domains"].append("exa mple.com/path")
    source = tmp_path / "policy.json"
    source.write_text(json.dumps(sign_document(document, vector_seed, "key_test_1")))
    out = tmp_path / "bundle.tar.gz"
    assert cli("policy", "build", "--file", source, "--keyring", KEYRING, "--out", out) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {source}: /content/permissions/network/allowed_domains/2: ")
    assert err.count("\n") == 1 and not out.exists()


def test_policy_eval_prints_the_decision_and_exits_by_it(tmp_path, rsa_keys, capsys):
    private, public = rsa_keys
    bundle = tmp_path / "bundle.tar.gz"
    assert cli("policy", "build", "--file", CODING, "--keyring", KEYRING, "--out", bundle, "--signing-key", private) == 0
    capsys.readouterr()
    source = ("--bundle", bundle, "--verification-key", public)
    assert cli("policy", "eval", *source, "--action", '{"type": "tool", "name": "web_search"}') == 0
    assert json.loads(capsys.readouterr().out)["allow"] is True
    # the same normalisation as the enforcer: the path is resolved before OPA's rules see it
    action = '{"type": "filesystem", "path": "/workspace/../workspace/secrets/k.txt", "operation": "read"}'
    assert cli("policy", "eval", *source, "--action", action) == 3
    assert [v["rule"] for v in json.loads(capsys.readouterr().out)["violations"]] == ["fs.blocked"]
    assert cli("policy", "eval", "--file", CODING, "--keyring", KEYRING, "--action", action) == 3
    capsys.readouterr()
    assert cli("policy", "eval", *source, "--action", '{"type": "tool", "name": ""}') == 1
    assert capsys.readouterr().err == "error: --action: name must not be empty\n"
    assert cli("policy", "eval", "--bundle", bundle, "--action", '{"type": "tool", "name": "web_search"}') == 1
    assert "pass its verification_key" in capsys.readouterr().err


def test_a_bundle_with_default_roots_cannot_sit_beside_a_workspace(tmp_path, opa_bin):
    """A bundle without roots owns the whole data tree: OPA refuses to load it beside a sekuire bundle (what
    docs/opa.md tells fleets: give your own bundles roots)."""
    ours = tmp_path / "ours.tar.gz"
    assert cli("policy", "build", "--file", CODING, "--keyring", KEYRING, "--out", ours) == 0
    theirs = tmp_path / "theirs"
    (theirs / "acme").mkdir(parents=True)
    (theirs / "acme" / "policy.rego").write_text("package acme\n\nallow if input.user == \"alice\"\n")
    built = tmp_path / "theirs.tar.gz"
    subprocess.run([opa_bin, "build", "-b", str(theirs), "-o", str(built)], check=True, capture_output=True)
    result = subprocess.run([opa_bin, "run", "--server", "--addr", "127.0.0.1:0", "--bundle", str(ours),
                             "--bundle", str(built)], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "overlap" in (result.stdout + result.stderr).lower()
