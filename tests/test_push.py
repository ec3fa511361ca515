"""``sekuire push`` against a real policy backend on loopback: the manifest gate, --force, and what the backend receives."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from sekuire.compiler.cli import main

from .backend_server import PolicyBackend
from .conftest import free_port

WS = "ws_abc123"
AGENTS = f"/v1/workspaces/{WS}/agents"


def _manifest(directory: Path, model: str = "gpt-4o", tools: Sequence[str] = ("web_search", "file_read"), logging: bool = True) -> Path:
    (directory / "tools.yml").write_text("".join(f"- name: {name}\n" for name in tools))
    path = directory / "sekuire.yml"
    path.write_text(
        "agent:\n  name: support-bot\n"
        f"  llm: {{provider: openai, model: {model}}}\n"
        "  tools: tools.yml\n"
        "capabilities:\n  provides: ['github:create_issue']\n"
        + ("logging:\n  enabled: true\n" if logging else "")
    )
    return path


def backend_hash(backend: PolicyBackend) -> str:
    return json.loads(backend.policies[WS])["hash"]


def push(capsys, url: str, keyring: Path, manifest: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["push", "--workspace", WS, "--backend", url, "--keyring", str(keyring), "--manifest", str(manifest), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_compliant_manifest_is_pushed(capsys, url, backend, tmp_path, vector_keyring):
    code, out, err = push(capsys, url, vector_keyring.path, _manifest(tmp_path))
    assert (code, err) == (0, "")
    assert out == "Pushed agent support-bot to workspace ws_abc123 as agent_1 (validated against policy policy_xyz (v1))\n"
    (received,) = backend.agents[WS]
    assert received == {
        "agent": {"name": "support-bot", "llm": {"provider": "openai", "model": "gpt-4o"}},
        "tools": ["web_search", "file_read"],
        "capabilities": {"provides": ["github:create_issue"]},
        "logging": {"enabled": True},
        "validation": {
            "policy": {"policy_id": "policy_xyz", "version": "1", "hash": backend_hash(backend)},
            "violations": [],
            "forced": False,
        },
    }
    assert backend.seen("POST", AGENTS)[0].headers["Content-Type"] == "application/json"


def test_violations_block_the_push_with_exit_3(capsys, url, backend, tmp_path, vector_keyring):
    manifest = _manifest(tmp_path, model="gpt-4o-mini", tools=["web_search", "shell", "file_delete"], logging=False)
    code, out, err = push(capsys, url, vector_keyring.path, manifest)
    assert code == 3 and out == ""
    lines = err.splitlines()
    assert "violation: manifest.model_not_allowed: agent model 'gpt-4o-mini' is not in the allowed models" in lines
    assert "violation: manifest.tool_not_allowed: tool 'shell' is not in the allowed tools" in lines
    assert "violation: manifest.tool_denied: tool 'file_delete' is denied by the workspace policy" in lines
    assert any(line.startswith("warning: manifest.compliance: ") for line in lines)
    assert lines[-1].startswith(f"error: push blocked: {manifest} violates policy policy_xyz (v1) of workspace ws_abc123")
    assert backend.seen("POST") == [] and WS not in backend.agents


def test_force_pushes_despite_violations_and_says_so(capsys, url, backend, tmp_path, vector_keyring):
    code, out, err = push(capsys, url, vector_keyring.path, _manifest(tmp_path, tools=["shell"]), "--force")
    assert code == 0
    assert "violation: manifest.tool_not_allowed: tool 'shell' is not in the allowed tools" in err
    assert "warning: pushing despite 1 violation(s) (--force)" in err
    assert out.startswith("Pushed agent support-bot to workspace ws_abc123 as agent_1")
    (received,) = backend.agents[WS]
    assert received["tools"] == ["shell"]
    assert received["validation"]["violations"] == ["manifest.tool_not_allowed"] and received["validation"]["forced"]


def test_a_tampered_active_policy_stops_the_push(capsys, url, backend, tmp_path, envelope_vectors, vector_keyring):
    tampered = json.loads(json.dumps(envelope_vectors["valid"]))
    tampered["content"]["agent"]["capabilities"]["allowed_tools"].append("*")
    backend.set_policy(tampered)
    code, out, err = push(capsys, url, vector_keyring.path, _manifest(tmp_path, tools=["shell"]))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "/policies/active: /hash: hash mismatch" in err
    assert backend.seen("POST") == []


def test_a_bad_manifest_fails_before_any_request(capsys, url, backend, tmp_path, vector_keyring):
    manifest = tmp_path / "sekuire.yml"
    manifest.write_text("agent:\n  name: a\n  llm: {provider: openai}\n")
    code, _, err = push(capsys, url, vector_keyring.path, manifest)
    assert code == 1 and err == f"error: {manifest}: /agent/llm/model: required field is missing\n"
    assert backend.requests == []


def test_backend_down(capsys, tmp_path, vector_keyring):
    code, _, err = push(capsys, f"http://127.0.0.1:{free_port()}", vector_keyring.path, _manifest(tmp_path))
    assert code == 1 and "request failed: ConnectError" in err and err.count("\n") == 1


def test_without_workspace_the_manifest_is_pushed_unvalidated_and_says_so(capsys, url, backend, tmp_path, vector_keyring):
    manifest = _manifest(tmp_path, tools=["shell"])  # would violate the workspace policy
    code = main(["push", "--backend", url, "--keyring", str(vector_keyring.path), "--manifest", str(manifest)])
    out, err = capsys.readouterr()
    assert code == 0
    assert err == (f"warning: no --workspace: pushing {manifest} WITHOUT policy validation "
                   "(pass --workspace ID to validate it against the workspace's active policy)\n")
    assert out == "Pushed agent support-bot as agent_1 (not validated against any policy)\n"
    # No policy was fetched; the manifest went to /v1/agents with no validation record.
    assert [(r.method, r.path) for r in backend.requests] == [("POST", "/v1/agents")]
    (received,) = backend.agents[""]
    assert received["tools"] == ["shell"] and received["validation"] is None

