"""The Rego library, the lowering and the compile step, checked with the real OPA.

- the rendered library passes ``opa check --strict``, is ``opa fmt``-clean and
  its ``_test.rego`` files pass ``opa test``, for identifier and quoted workspace ids;
- a workspace id with dashes loads in ``opa run --server`` and answers at its REST path;
- lowering builds the indexed layout, and an illegal pattern raises CompileError
  naming its JSON pointer;
- a decision evaluates the same number of expressions whatever the list sizes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sekuire.compiler import (
    CompileError,
    Keyring,
    content_hash,
    load_policy,
    parse_policy,
)
from sekuire.compiler.policy.model import parse_content
from sekuire.compiler.rego.compile import CompiledPolicy, compile_policy
from sekuire.compiler.rego.library import (
    MODULE_NAMES,
    TEST_NAMES,
    TEST_WORKSPACE,
    render_modules,
    render_tests,
    workspace_package,
    workspace_root,
)
from sekuire.compiler.rego.lowering import (
    MODEL_PROVIDER_PREFIXES,
    glob_regex,
    lower_content,
)

from .conftest import VECTOR_POLICY

ROOT = Path(__file__).resolve().parent.parent


def _run(opa: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([opa, *args], capture_output=True, text=True, timeout=120, check=False)


def _write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return directory


def _lower(content: dict[str, Any]) -> dict[str, Any]:
    model, _, _ = parse_content(content)
    return lower_content(model)


def _compile(content: dict[str, Any], workspace_id: str = "ws_test") -> CompiledPolicy:
    """Compile content in an unsigned envelope (signatures are not what these tests are about)."""
    document = {"policy_id": "policy_t", "workspace_id": workspace_id, "version": "4", "status": "active",
                "content": content, "hash": content_hash(content)}
    return compile_policy(parse_policy(document, Keyring(), allow_unsigned=True))


# -- rendering ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workspace_id", "package"),
    [
        ("ws_abc123", "sekuire.workspaces.ws_abc123"),
        ("ws-1", 'sekuire.workspaces["ws-1"]'),
        ("9lives", 'sekuire.workspaces["9lives"]'),
        ("if", 'sekuire.workspaces["if"]'),
        ("team.alpha", 'sekuire.workspaces["team.alpha"]'),
        ("_private", "sekuire.workspaces._private"),
    ],
)
def test_workspace_package(workspace_id: str, package: str) -> None:
    assert workspace_package(workspace_id) == package
    assert workspace_root(workspace_id) == f"sekuire/workspaces/{workspace_id}"


@pytest.mark.parametrize(
    "workspace_id", ["", ".", "..", ".hidden", "-x", "a/b", "a b", 'a"b', "a\\b", "ws\u00e9", "x" * 129, "a\nb", 5, None]
)
def test_workspace_ids_that_cannot_be_a_path_element_are_refused(workspace_id: Any) -> None:
    with pytest.raises(CompileError) as info:
        workspace_package(workspace_id)
    assert info.value.pointer == "/workspace_id"


def test_render_is_deterministic_and_complete() -> None:
    modules = render_modules("ws-1")
    assert modules == render_modules("ws-1")
    assert sorted(modules) == sorted(f"sekuire/workspaces/ws-1/{name}.rego" for name in MODULE_NAMES)
    tests = render_tests("ws-1")
    assert sorted(tests) == sorted(f"sekuire/workspaces/ws-1/{name}_test.rego" for name in TEST_NAMES)
    for source in [*modules.values(), *tests.values()]:
        # No Jinja syntax left over ("{{ x }}", "{% ... %}"); Rego's own "{{" opens a set of objects.
        assert "{{ " not in source and "{%" not in source
        assert source.endswith("\n")
    assert modules["sekuire/workspaces/ws-1/workspace.rego"].count('package sekuire.workspaces["ws-1"]\n') == 1


@pytest.mark.parametrize("workspace_id", [TEST_WORKSPACE, "ws_abc123"])
def test_library_checks_formats_and_passes_its_tests(opa_bin: str, tmp_path: Path, workspace_id: str) -> None:
    out = _write(tmp_path, {**render_modules(workspace_id), **render_tests(workspace_id)})
    check = _run(opa_bin, "check", "--strict", str(out))
    assert check.returncode == 0, check.stderr
    fmt = _run(opa_bin, "fmt", "--list", str(out))
    assert fmt.returncode == 0 and fmt.stdout == "", fmt.stdout + fmt.stderr
    result = _run(opa_bin, "test", "--v0-compatible=false", "--format", "json", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    reports = json.loads(result.stdout)
    assert len(reports) >= 100
    assert all(report.get("pass") or not report.get("fail") for report in reports)


def test_cli_writes_the_test_workspace(opa_bin: str, tmp_path: Path) -> None:
    sekuire = Path(sys.executable).parent / "sekuire"
    done = subprocess.run([str(sekuire), "policy", "rego", "--out", str(tmp_path), "--tests"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.rego"))
    assert written == sorted([*render_modules(TEST_WORKSPACE), *render_tests(TEST_WORKSPACE)])
    assert _run(opa_bin, "check", "--strict", str(tmp_path)).returncode == 0


def test_dashed_workspace_loads_in_opa_and_answers_at_its_rest_path(opa_server, tmp_path: Path) -> None:
    content = json.loads(VECTOR_POLICY.read_text(encoding="utf-8"))["content"]
    compiled = _compile(content, workspace_id="ws-research-eu")
    assert compiled.package == 'sekuire.workspaces["ws-research-eu"]'
    assert compiled.decision_path == "sekuire/workspaces/ws-research-eu/decision"
    directory = _write(tmp_path / "b", compiled.modules)
    (directory / "data.json").write_text(json.dumps(compiled.data), encoding="utf-8")
    with opa_server([str(directory)]) as server:
        def ask(path: str, document: Any) -> dict[str, Any]:
            response = httpx.post(f"{server.url}/v1/data/{path}", json={"input": document}, timeout=10)
            response.raise_for_status()
            return response.json()["result"]

        allowed = ask(compiled.decision_path, {"action": {"type": "tool", "name": "web_search"}})
        assert allowed == {"allow": True, "violations": [], "policy": {"policy_id": "policy_t", "version": "4",
                                                                       "hash": compiled.manifest["metadata"]["hash"]}}
        denied = ask(compiled.decision_path, {"action": {"type": "network", "host": "anthropic.com.evil.net",
                                                         "protocol": "https"}})
        assert [v["rule"] for v in denied["violations"]] == ["network.not_allowed"]
        manifest = ask(compiled.manifest_path, {"tools": ["file_delete"]})
        assert manifest["allow"] is False and manifest["warnings"][0]["rule"] == "manifest.compliance"


# -- compile -----------------------------------------------------------------------------------------------


def test_compile_policy_attributes(vector_keyring) -> None:
    policy = load_policy(VECTOR_POLICY, vector_keyring)
    compiled = compile_policy(policy)
    assert compiled.workspace_id == "ws_abc123"
    assert compiled.root == "sekuire/workspaces/ws_abc123"
    assert compiled.package == "sekuire.workspaces.ws_abc123"
    assert compiled.decision_path == "sekuire/workspaces/ws_abc123/decision"
    assert compiled.manifest_path == "sekuire/workspaces/ws_abc123/manifest"
    assert compiled.revision == policy.revision
    assert set(compiled.modules) == set(render_modules("ws_abc123"))
    assert not any(name.startswith("/") for name in compiled.modules)
    lowered = compiled.data["sekuire"]["workspaces"]["ws_abc123"]["policy"]
    assert list(compiled.data) == ["sekuire"] and list(compiled.data["sekuire"]["workspaces"]) == ["ws_abc123"]
    assert lowered["meta"] == {"policy_id": "policy_xyz", "version": "1", "hash": policy.hash}
    assert compiled.manifest == {
        "revision": policy.revision,
        "roots": ["sekuire/workspaces/ws_abc123"],
        "rego_version": 1,
        "metadata": {"policy_id": "policy_xyz", "workspace_id": "ws_abc123", "version": "1", "hash": policy.hash,
                     "compiler_version": compiled.manifest["metadata"]["compiler_version"]},
    }
    with pytest.raises(AttributeError):
        compiled.root = "elsewhere"  # type: ignore[misc]


def test_compile_refuses_a_workspace_id_that_cannot_be_a_root() -> None:
    with pytest.raises(CompileError) as info:
        _compile({}, workspace_id="ws/../other")
    assert info.value.pointer == "/workspace_id"


# -- lowering ----------------------------------------------------------------------------------------------


def test_lowering_of_the_vector_policy() -> None:
    content = json.loads(VECTOR_POLICY.read_text(encoding="utf-8"))["content"]
    data = _lower(content)
    assert data["sections"] == {"tools": True, "network": True, "filesystem": True, "apis": True, "models": True,
                                "rate_limits": True, "compliance": True}
    file_glob = {"any": True, "suffixes": {"lengths": [], "prefixes": {}}, "regexes": {}}
    assert data["tools"] == {
        "allowed": {"exact": {"web_search": True, "github:create_issue": True}, "patterns": {"file_*": "^(?s:file_.*)$"},
                    "globs": {"lengths": [5], "prefixes": {"file_": file_glob}}},
        "blocked": {"exact": {"file_delete": True}, "patterns": {}, "globs": {"lengths": [], "prefixes": {}}},
    }
    assert data["network"]["allowed"] == {"any": False, "exact": {"api.openai.com": "name"},
                                          "suffixes": {"anthropic.com": True}, "cidrs4": [], "cidrs6": [],
                                          "cidr4_lengths": [], "cidr4_nets": {}}
    assert data["filesystem"] == {
        "enabled": True,
        "allowed": {"exact": {}, "prefixes": {"/workspace": True, "/tmp": True}, "depths": [1]},
        "blocked": {"exact": {}, "prefixes": {"/workspace/secrets": True}, "depths": [2]},
        "any_extension": False,
        "extensions": {".txt": True, ".md": True, ".json": True},
        "operations": dict.fromkeys(("append", "create", "delete", "execute", "list", "read", "write"), True),
    }
    assert data["models"]["providers"] == {"openai": True, "anthropic": True}
    assert data["models"]["any_model"] is False
    assert data["rate_limits"] == {"request": {"minute": 60, "hour": 1000}, "token": {"minute": 40000, "hour": 1000000}}
    grouped = data["model_prefixes"]["groups"]
    assert {row["prefix"]: row["provider"] for rows in grouped.values() for row in rows} == MODEL_PROVIDER_PREFIXES
    assert all(row["prefix"].startswith(start) for start, rows in grouped.items() for row in rows)


def test_missing_sections_lower_to_none() -> None:
    data = _lower({"permissions": {"apis": {"allowed_apis": ["x"]}}})
    assert data["sections"] == {"tools": False, "network": False, "filesystem": False, "apis": True, "models": False,
                                "rate_limits": False, "compliance": False}
    assert data["tools"] is None and data["network"] is None and data["models"] is None


def test_domain_entries_are_normalised() -> None:
    data = _lower({"permissions": {"network": {"allowed_domains": [
        "*.Example.COM.", "API.test.", "*", "10.1.2.3/8", "192.168.0.1", "[2001:DB8::1]", "fd00::/8", "::1",
    ]}}})
    assert data["network"]["allowed"] == {
        "any": True,
        "exact": {"api.test": "name", "192.168.0.1": "ipv4"},
        "suffixes": {"example.com": True},
        "cidrs4": ["10.0.0.0/8"],
        "cidr4_lengths": [8],
        "cidr4_nets": {"8": {"10": "10.0.0.0/8"}},
        "cidrs6": ["2001:db8::1/128", "::1/128", "fd00::/8"],
    }


def test_globs_are_indexed_by_their_literal_prefix() -> None:
    data = _lower({"agent": {"capabilities": {"allowed_tools": [
        "web_search", "file_*", "file_*_v2", "*", "*_admin", "a*b*c", "é*ü",
    ]}}})
    globs = data["tools"]["allowed"]["globs"]
    assert globs["lengths"] == [0, 1, 5]  # code points, as Rego's substring counts
    assert globs["prefixes"]["file_"] == {"any": True, "suffixes": {"lengths": [3], "prefixes": {"2v_": True}},
                                          "regexes": {}}
    assert globs["prefixes"][""] == {"any": True, "suffixes": {"lengths": [6], "prefixes": {"nimda_": True}},
                                     "regexes": {}}
    assert globs["prefixes"]["a"]["regexes"] == {"a*b*c": "^(?s:a.*b.*c)$"}
    assert globs["prefixes"]["é"]["suffixes"] == {"lengths": [1], "prefixes": {"ü": True}}
    assert set(data["tools"]["allowed"]["patterns"]) == {"file_*", "file_*_v2", "*", "*_admin", "a*b*c", "é*ü"}


def test_ipv4_cidrs_are_indexed_by_prefix_length_and_paths_by_depth() -> None:
    data = _lower({"permissions": {
        "network": {"allowed_domains": ["10.0.0.0/8", "192.168.7.0/24", "192.168.8.0/24", "1.2.3.4/32", "0.0.0.0/0"]},
        "filesystem": {"allowed_paths": ["/*", "/a/*", "/a/b/c/*", "/x/y"]},
    }})
    allowed = data["network"]["allowed"]
    assert allowed["cidr4_lengths"] == [0, 8, 24, 32]
    assert allowed["cidr4_nets"] == {"0": {"0": "0.0.0.0/0"}, "8": {"10": "10.0.0.0/8"},
                                     "24": {str(0xC0A807): "192.168.7.0/24", str(0xC0A808): "192.168.8.0/24"},
                                     "32": {str(0x01020304): "1.2.3.4/32"}}
    assert data["filesystem"]["allowed"]["depths"] == [0, 1, 3]


def test_extensions_and_operations_are_normalised() -> None:
    data = _lower({"permissions": {"filesystem": {"allowed_extensions": ["TXT", ".Md"], "allowed_operations": ["read"]}}})
    assert data["filesystem"]["extensions"] == {".txt": True, ".md": True}
    assert data["filesystem"]["operations"] == {"read": True}
    assert _lower({"permissions": {"filesystem": {}}})["filesystem"]["any_extension"] is True


@pytest.mark.parametrize(
    ("pattern", "matches", "does_not_match"),
    [
        ("file_*", ["file_", "file_read", "file_\n"], ["file", "xfile_read", "File_read"]),
        ("a.b*c", ["a.bc", "a.bxxc"], ["aXbc", "a.b"]),
        ("(x)|[y]*", ["(x)|[y]", "(x)|[y]zz"], ["x", "y"]),
        ("*", ["", "anything"], []),
    ],
)
def test_glob_regex(pattern: str, matches: list[str], does_not_match: list[str]) -> None:
    import re

    regex = glob_regex(pattern)
    for name in matches:
        assert re.search(regex, name), (pattern, name)
    for name in does_not_match:
        assert not re.search(regex, name), (pattern, name)


_BAD = [
    ({"permissions": {"network": {"allowed_domains": ["ok.com", "a.com", "b.com", "api.*.com"]}}},
     "/content/permissions/network/allowed_domains/3", "'*'"),
    ({"permissions": {"network": {"blocked_domains": ["*example.com"]}}},
     "/content/permissions/network/blocked_domains/0", "'*'"),
    ({"permissions": {"network": {"allowed_domains": ["example.com:443"]}}},
     "/content/permissions/network/allowed_domains/0", "port"),
    ({"permissions": {"network": {"allowed_domains": ["https://example.com"]}}},
     "/content/permissions/network/allowed_domains/0", "invalid"),
    ({"permissions": {"network": {"allowed_domains": ["a b.com"]}}}, "/content/permissions/network/allowed_domains/0",
     "not a host name"),
    ({"permissions": {"network": {"allowed_domains": ["ex..com"]}}}, "/content/permissions/network/allowed_domains/0",
     "not a host name"),
    ({"permissions": {"network": {"allowed_domains": ["10.0.0.0/33"]}}},
     "/content/permissions/network/allowed_domains/0", "CIDR"),
    ({"permissions": {"network": {"allowed_domains": ["2130706433"]}}},
     "/content/permissions/network/allowed_domains/0", "not a host name"),
    ({"permissions": {"network": {"allowed_domains": ["*.0x7f.1"]}}},
     "/content/permissions/network/allowed_domains/0", "host name"),
    ({"permissions": {"network": {"allowed_domains": ["::ffff:10.0.0.0/104"]}}},
     "/content/permissions/network/allowed_domains/0", "IPv4-mapped"),
    ({"permissions": {"network": {"allowed_domains": [""]}}}, "/content/permissions/network/allowed_domains/0",
     "not a host name"),
    ({"permissions": {"filesystem": {"allowed_paths": ["/ok/*", "workspace/*"]}}},
     "/content/permissions/filesystem/allowed_paths/1", "not absolute"),
    ({"permissions": {"filesystem": {"blocked_paths": ["/a/*/b"]}}}, "/content/permissions/filesystem/blocked_paths/0",
     "final '/*'"),
    ({"permissions": {"filesystem": {"allowed_paths": ["/a/../b/*"]}}},
     "/content/permissions/filesystem/allowed_paths/0", "normalised"),
    ({"permissions": {"filesystem": {"allowed_paths": ["//a"]}}}, "/content/permissions/filesystem/allowed_paths/0",
     "normalised"),
    ({"permissions": {"filesystem": {"allowed_paths": ["/a/"]}}}, "/content/permissions/filesystem/allowed_paths/0",
     "normalised"),
    ({"permissions": {"filesystem": {"allowed_paths": ["/a\u0000b"]}}},
     "/content/permissions/filesystem/allowed_paths/0", "normalised"),
    ({"permissions": {"filesystem": {"allowed_extensions": [".txt", "tar.gz"]}}},
     "/content/permissions/filesystem/allowed_extensions/1", "final suffix"),
    ({"permissions": {"filesystem": {"allowed_extensions": ["."]}}},
     "/content/permissions/filesystem/allowed_extensions/0", "single suffix"),
    ({"permissions": {"filesystem": {"allowed_operations": ["read", "chmod"]}}},
     "/content/permissions/filesystem/allowed_operations/1", "unknown operation"),
    ({"agent": {"capabilities": {"allowed_tools": ["ok", "a b"]}}}, "/content/agent/capabilities/allowed_tools/1",
     "whitespace"),
    ({"permissions": {"tools": {"blocked_tools": [""]}}}, "/content/permissions/tools/blocked_tools/0", "empty"),
    ({"permissions": {"apis": {"allowed_apis": ["x\u0000"]}}}, "/content/permissions/apis/allowed_apis/0", "control"),
    ({"agent": {"models": {"denied_models": ["gpt\n4"]}}}, "/content/agent/models/denied_models/0", "control"),
    ({"agent": {"models": {"allowed_providers": ["*"]}}}, "/content/agent/models/allowed_providers/0", "exact names"),
    ({"rate_limits": {"tokens": {"max_per_hour": 2**53}}}, "/content/rate_limits/tokens/max_per_hour", "larger"),
]


@pytest.mark.parametrize(("content", "pointer", "fragment"), _BAD)
def test_illegal_patterns_raise_compile_error_with_pointer(content: dict[str, Any], pointer: str, fragment: str) -> None:
    with pytest.raises(CompileError) as info:
        _lower(content)
    assert info.value.pointer == pointer
    assert fragment in info.value.message
    assert str(info.value).startswith(pointer + ": ")


# -- cost independent of list size -------------------------------------------------------------------------


def _big_content(n: int) -> dict[str, Any]:
    return {
        "agent": {
            "capabilities": {"allowed_tools": [f"tool_{i}" for i in range(n)] + ["file_*"],
                             "denied_tools": [f"bad_{i}" for i in range(n)]},
            "models": {"allowed_providers": ["openai"], "allowed_models": [f"gpt-{i}" for i in range(n)]},
        },
        "permissions": {
            "network": {"allowed_domains": [f"h{i}.example.com" for i in range(n)] + ["*.corp.example", "10.0.0.0/8"],
                        "blocked_domains": [f"*.b{i}.example.com" for i in range(n)]},
            "filesystem": {"allowed_paths": [f"/data/d{i}/*" for i in range(n)],
                           "blocked_paths": [f"/data/d{i}/secret" for i in range(n)]},
            "apis": {"allowed_apis": [f"api{i}" for i in range(n)]},
        },
    }


def test_decision_work_does_not_grow_with_list_size(opa_bin: str, tmp_path: Path) -> None:
    """OPA's profiler counts evaluated expressions: the same for 10 and 5,000 entries per list."""
    actions = [
        {"type": "tool", "name": "tool_5"}, {"type": "tool", "name": "nope"},
        {"type": "network", "host": "a.b.c.h5.example.com", "protocol": "https"},
        {"type": "network", "host": "h7.example.com", "protocol": "https"},
        {"type": "network", "host": "10.1.2.3", "protocol": "https"},
        {"type": "filesystem", "path": "/data/d7/x/y/z.txt", "operation": "read"},
        {"type": "model", "name": "gpt-7"}, {"type": "api", "name": "api3"},
    ]
    counts: dict[int, list[tuple[int, bool]]] = {}
    for n in (10, 5000):
        compiled = _compile(_big_content(n))
        directory = _write(tmp_path / str(n), compiled.modules)
        (directory / "data.json").write_text(json.dumps(compiled.data), encoding="utf-8")
        counts[n] = []
        for action in actions:
            (tmp_path / "input.json").write_text(json.dumps({"action": action}), encoding="utf-8")
            out = _run(opa_bin, "eval", "-d", str(directory), "-i", str(tmp_path / "input.json"), "--profile",
                       "--profile-limit", "100000", "-f", "json", f"data.{compiled.package}.decision")
            assert out.returncode == 0, out.stderr
            result = json.loads(out.stdout)
            evaluated = sum(row["num_eval"] + row["num_redo"] for row in result["profile"])
            counts[n].append((evaluated, result["result"][0]["expressions"][0]["value"]["allow"]))
    assert counts[10] == counts[5000]
    assert [allow for _, allow in counts[10]] == [True, False, False, True, True, True, True, True]
