"""Organisation rules in Rego (issue 13.2): built into the signed bundle, decided alike by regorus and the real OPA, deny-only."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sekuire.compiler import BundleSigner, build_bundle, compile_policy
from sekuire.compiler.cli import main
from sekuire.compiler.rego.extensions import Extension, load_extensions
from sekuire.runtime import EmbeddedEngine, PolicyEnforcer, PolicyViolationError

from .conftest import ROOT
from .security_support import bundle_key, serve_bundles, unsigned_policy

EXAMPLE = ROOT / "policies" / "examples" / "extensions"
REFUND = {"type": "tool", "name": "payments:refund"}


@pytest.fixture(scope="module")
def payments_policy(envelope_vectors_module):
    content = copy.deepcopy(envelope_vectors_module["valid"]["content"])
    content["agent"]["capabilities"]["allowed_tools"].append("payments:*")
    content.setdefault("compliance", {})["require_audit_logging"] = False
    return unsigned_policy(content)


@pytest.fixture(scope="module")
def envelope_vectors_module():
    return json.loads((ROOT / "tests" / "vectors" / "policy-envelope.json").read_text(encoding="utf-8"))


def _decide(engine: Any, path: str, action: dict[str, Any]) -> dict[str, Any]:
    return engine.evaluate(path, {"action": action, "context": {"agent": "a", "workspace": "ws_abc123"}})


def test_the_refund_limit_denies_401_and_allows_400_in_both_engines(payments_policy, opa_bin, tmp_path):
    compiled = compile_policy(payments_policy, load_extensions([EXAMPLE]))
    assert any(path.endswith("/ext/refund.rego") for path in compiled.modules)
    assert not any(path.endswith("_test.rego") for path in compiled.modules)
    bundle = build_bundle(compiled, signer=BundleSigner(bundle_key().private))
    embedded = EmbeddedEngine.from_bundle(bundle, verification_key=bundle_key().public)
    with serve_bundles(opa_bin, {"payments": bundle}, tmp_path) as opa:
        for amount, expected in ((400, []), (401, ["ext.refund_limit"]), ("400", ["ext.refund_amount"])):
            action = {**REFUND, "args": {"amount": amount}}
            ours = _decide(embedded, compiled.decision_path, action)
            theirs = httpx.post(f"{opa.url}/v1/data/{compiled.decision_path}",
                                json={"input": {"action": action, "context": {"agent": "a", "workspace": "ws_abc123"}}},
                                timeout=10).json()["result"]
            assert ours == theirs, (amount, ours, theirs)
            assert [v["rule"] for v in ours["violations"]] == expected
    embedded.close()


def test_the_enforcer_and_the_agent_args_reach_the_extension(payments_policy):
    compiled = compile_policy(payments_policy, load_extensions([EXAMPLE]))
    with PolicyEnforcer(payments_policy, engine=EmbeddedEngine.from_compiled(compiled)) as enforcer:
        assert enforcer.enforce_tool("payments:refund", {"amount": 400}).allow
        with pytest.raises(PolicyViolationError) as info:
            enforcer.enforce_tool("payments:refund", {"amount": 401})
        assert info.value.rule == "ext.refund_limit"
        enforcer.engine.close()


def test_a_rule_id_outside_ext_is_reported_as_invalid(payments_policy):
    rogue = Extension("rogue.rego", "rogue", 'package ext.rogue\n\ndeny contains {"rule": "tool.blocked", "message": "m"} if true\n')
    compiled = compile_policy(payments_policy, [rogue])
    with EmbeddedEngine.from_compiled(compiled) as engine:
        decision = _decide(engine, compiled.decision_path, {"type": "tool", "name": "web_search"})
    assert decision["allow"] is False and [v["rule"] for v in decision["violations"]] == ["ext.invalid_rule"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("package other\n", "exactly one `package ext.<name>`"),
        ('package ext.bad\n\ndeny contains {"rule": "ext.x", "message": "m"} if {\n\tinput.action.nope(\n}\n',
         "line 5"),
        ('package ext.bad\n\ndeny contains {"rule": "ext.x", "message": "m"} if {\n\tx := 1\n}\n', "line 4"),
    ],
    ids=["package", "syntax", "strict"],
)
def test_a_bad_extension_fails_the_build_naming_file_and_line(source, message, payments_policy, opa_bin, tmp_path,
                                                              capsys, monkeypatch):
    monkeypatch.setenv("SEKUIRE_OPA", opa_bin)  # the strict check (an unused variable) is OPA's
    folder = tmp_path / "ext"
    folder.mkdir()
    (folder / "bad.rego").write_text(source)
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(_document(payments_policy)))
    out = tmp_path / "b.tar.gz"
    code = main(["policy", "build", "--file", str(policy_file), "--allow-unsigned", "--extension", str(folder),
                 "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and not out.exists()
    assert err[-1].startswith(f"error: {folder / 'bad.rego'}: ") and message in err[-1]


def _document(policy: Any) -> dict[str, Any]:
    return {"policy_id": policy.policy_id, "workspace_id": policy.workspace_id, "version": policy.version,
            "status": "active", "hash": policy.hash, "content": policy.raw_content}


# -- extensions never widen ---------------------------------------------------------------------------------

CONDITIONS = st.sampled_from([
    'input.action.type == "tool"',
    'input.action.name == "web_search"',
    "input.action.args.n > 3",
    'startswith(input.action.name, "file")',
    "true",
    'input.action.host == "api.openai.com"',
])
ACTIONS = st.one_of(
    st.builds(lambda n, a: {"type": "tool", "name": n, "args": {"n": a}},
              st.sampled_from(["web_search", "file_read", "file_delete", "shell", "payments:refund"]), st.integers(0, 9)),
    st.builds(lambda h: {"type": "network", "host": h, "protocol": "https"},
              st.sampled_from(["api.openai.com", "evil.example", "api.anthropic.com"])),
)


@settings(max_examples=40, deadline=None)
@given(rules=st.lists(st.tuples(st.sampled_from(["ext.a", "ext.b", "tool.blocked"]), CONDITIONS), min_size=1,
                      max_size=3), actions=st.lists(ACTIONS, min_size=1, max_size=6))
def test_extensions_only_ever_add_violations(payments_policy, rules, actions):
    body = "\n\n".join(f'deny contains {{"rule": "{rule}", "message": "m{i}"}} if {{\n\t{cond}\n}}'
                       for i, (rule, cond) in enumerate(rules))
    extension = Extension("x.rego", "x", f"package ext.x\n\n{body}\n")
    base = compile_policy(payments_policy)
    extended = compile_policy(payments_policy, [extension])
    with EmbeddedEngine.from_compiled(base) as plain, EmbeddedEngine.from_compiled(extended) as ruled:
        for action in actions:
            before = _decide(plain, base.decision_path, action)
            after = _decide(ruled, extended.decision_path, action)
            assert not after["allow"] or before["allow"], (action, rules)
            assert {(v["rule"], v["message"]) for v in before["violations"]} <= \
                {(v["rule"], v["message"]) for v in after["violations"]}
            assert all(v["rule"].startswith("ext.") or v in before["violations"] for v in after["violations"])


# The common allow of every action type, under the vector policy: each is a fast allow, which must step aside
# when extension modules are in the bundle (a mutant that let the filesystem fast allow ignore them survived).
COMMON_ALLOWS = [
    {"type": "tool", "name": "web_search"},
    {"type": "capability", "name": "web_search"},
    {"type": "network", "host": "api.openai.com", "protocol": "https"},
    {"type": "filesystem", "path": "/workspace/notes.md", "operation": "read"},
    {"type": "api", "name": "github"},
    {"type": "model", "name": "gpt-4o"},
    {"type": "rate_limit", "kind": "request", "amount": 1, "usage": {"minute": 0, "hour": 0}},
]


@pytest.mark.parametrize("action", COMMON_ALLOWS, ids=lambda a: a["type"])
def test_an_extension_denies_even_the_common_allow_of_every_action_type(payments_policy, action):
    extension = Extension("all.rego", "all", 'package ext.all\n\ndeny contains {"rule": "ext.all", "message": "no"}\n')
    base, extended = compile_policy(payments_policy), compile_policy(payments_policy, [extension])
    with EmbeddedEngine.from_compiled(base) as plain, EmbeddedEngine.from_compiled(extended) as ruled:
        assert _decide(plain, base.decision_path, action)["allow"] is True
        after = _decide(ruled, extended.decision_path, action)
    assert after["allow"] is False and [v["rule"] for v in after["violations"]] == ["ext.all"]
