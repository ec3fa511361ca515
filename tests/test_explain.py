"""Explanations (issue 13.4): every rule id names the policy entry behind it, identically in both engines.

The library's ``explain`` entry point is checked three ways: against the
decision it explains (the same allow, rules and messages), against the raw
policy content (a matched entry is one the policy lists), and engine against
engine (regorus and the real OPA give the same document), over the differential
corpus and through ``PolicyEnforcer.explain``, ``OPAEngine`` and the CLI.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import random
from typing import Any

import pytest
from sekuire.compiler import Keyring, load_policy
from sekuire.compiler.bundle.signing import BundleSigner
from sekuire.compiler.bundle.tarball import build_bundle
from sekuire.compiler.cli.main import main
from sekuire.compiler.rego.compile import compile_policy
from sekuire.compiler.rego.extensions import load_extensions
from sekuire.runtime import AllowedBy, Decision, EmbeddedEngine, OPAEngine, PolicyEnforcer, Violation
from sekuire.runtime.errors import EngineResponseError

from . import test_differential as differential
from .security_support import bundle_key, serve_bundles, unsigned_policy
from .test_extensions import EXAMPLE

#: Every rule id of an action decision (DESIGN.md section 4), and the extension example's.
ACTION_RULES = {
    "input.invalid", "tool.missing", "tool.blocked", "tool.not_allowed", "network.missing", "network.disabled",
    "network.tls_required", "network.blocked", "network.not_allowed", "network.invalid_host", "fs.missing",
    "fs.disabled", "fs.invalid_path", "fs.blocked", "fs.not_allowed", "fs.ext", "fs.operation", "api.missing",
    "api.blocked", "api.not_allowed", "model.missing", "model.provider_not_allowed", "model.denied",
    "model.not_allowed", "rate_limit.exceeded",
}
#: Every rule id of the manifest check, its warning included.
MANIFEST_RULES = {"manifest.model_not_allowed", "manifest.provider_not_allowed", "manifest.model_denied",
                  "manifest.tool_denied", "manifest.tool_not_allowed", "manifest.compliance"}
#: Rules decided by an entry of a list: the entry must be one the policy lists.
MATCHED = {"tool.blocked": "blocked_tools", "api.blocked": "blocked_apis", "model.denied": "denied_models",
           "network.blocked": "blocked_domains", "fs.blocked": "blocked_paths", "manifest.tool_denied": "blocked_tools",
           "manifest.model_denied": "denied_models"}


def _lists(content: dict[str, Any]) -> dict[str, set[str]]:
    """Every list of the raw content by setting, as the explanation names them, entries in normal form."""
    agent, permissions = content.get("agent") or {}, content.get("permissions") or {}
    capabilities, tools = agent.get("capabilities") or {}, permissions.get("tools") or {}
    models, network = agent.get("models") or {}, permissions.get("network") or {}
    filesystem, apis = permissions.get("filesystem") or {}, permissions.get("apis") or {}
    lists = {
        "permissions.tools.allowed_tools": {*capabilities.get("allowed_tools", []), *tools.get("allowed_tools", [])},
        "blocked_tools": {*capabilities.get("denied_tools", []), *tools.get("blocked_tools", [])},
        "permissions.apis.allowed_apis": set(apis.get("allowed_apis", [])),
        "blocked_apis": set(apis.get("blocked_apis", [])),
        "agent.models.allowed_models": set(models.get("allowed_models", [])),
        "denied_models": set(models.get("denied_models", [])),
        "agent.models.allowed_providers": {p.lower() for p in models.get("allowed_providers", [])},
        "permissions.network.allowed_domains": {_domain(d) for d in network.get("allowed_domains", [])},
        "blocked_domains": {_domain(d) for d in network.get("blocked_domains", [])},
        "permissions.filesystem.allowed_paths": set(filesystem.get("allowed_paths", [])),
        "blocked_paths": set(filesystem.get("blocked_paths", [])),
        "permissions.filesystem.allowed_extensions": {"." + e.lower().lstrip(".") for e in filesystem.get("allowed_extensions", [])},
        "permissions.filesystem.allowed_operations": set(filesystem.get(
            "allowed_operations", ["append", "create", "delete", "execute", "list", "read", "write"])),
    }
    for kind, limits in (content.get("rate_limits") or {}).items():
        for window in ("minute", "hour"):
            if (limits or {}).get(f"max_per_{window}") is not None:
                lists[f"rate_limits.{kind}.max_per_{window}"] = {str(limits[f"max_per_{window}"])}
    return lists


def _domain(entry: str) -> str:
    """A domain entry as the bundle holds it: a network in normal form, else lower-case without a final dot."""
    try:
        network = ipaddress.ip_network(entry.strip("[]"), strict=False)
    except ValueError:
        return entry.lower().rstrip(".")
    single = network.num_addresses == 1 and network.version == 4 and "/" not in entry
    return str(network.network_address) if single else str(network)


def _check_explained(content: dict[str, Any], explained: dict[str, Any], decided: dict[str, Any]) -> set[str]:
    """The explanation agrees with the decision and the content; returns the rule ids it explained."""
    assert explained["allow"] == decided["allow"] and explained["policy"] == decided["policy"]
    for kind in ("violations", "warnings") if "warnings" in decided else ("violations",):
        assert [{"rule": v["rule"], "message": v["message"]} for v in explained[kind]] == decided[kind]
    lists = _lists(content)
    for violation in explained["violations"] + explained.get("warnings", []):
        entry = violation["entry"]
        assert isinstance(entry, str) and entry, violation
        if violation["rule"] in MATCHED:
            assert entry in lists[MATCHED[violation["rule"]]] or _domain(entry) in lists["blocked_domains"], violation
    for match in explained["allowed_by"]:
        assert match["entry"] in lists[match["setting"]] or (
            match["setting"].endswith("allowed_domains") and _domain(match["entry"]) in lists[match["setting"]]
        ), match
    return {v["rule"] for v in explained["violations"] + explained.get("warnings", [])}


@pytest.fixture(scope="module")
def policies(envelope_vectors) -> list[tuple[Any, dict[str, Any]]]:
    """The example policies, the differential test's generated ones, and one with no sections at all."""
    key = envelope_vectors["key"]
    keyring = Keyring(keys={key["key_id"]: bytes.fromhex(key["public_key_hex"])})
    result = []
    for path in differential.EXAMPLES:
        policy = load_policy(path, keyring)
        result.append((compile_policy(policy), policy.raw_content))
    for index, content in enumerate([*differential.generated_contents(), {}]):
        policy = unsigned_policy(content, f"ws_gen_{index}")
        result.append((compile_policy(policy), policy.raw_content))
    return result


def test_explanations_agree_with_decisions_content_and_both_engines(opa_bin, tmp_path, policies):
    """A third of the differential corpus (a fixed sample) of actions and manifests under every example and
    generated policy: OPA == regorus (interpreter and VM), and both explain the decision they give with entries
    the policy lists."""
    actions, manifests = differential.corpus()
    actions = random.Random(13).sample(actions, len(actions) // 3)
    manifests = random.Random(13).sample(manifests, len(manifests) // 3)
    cases = [case for policy, content in policies for action in actions for case in (
        (policy, content, "decision", {"action": action, "context": {"agent": "explain"}}),
        (policy, content, "explain", {"action": action, "context": {"agent": "explain"}}),
    )] + [case for policy, content in policies for manifest in manifests for case in (
        (policy, content, "manifest", manifest), (policy, content, "explain_manifest", manifest),
    )]
    opa = differential._opa_results(opa_bin, tmp_path, policies, cases)
    interpreted, compiled_vm, compiled_vm_json = differential._regorus_results(policies, cases)
    assert interpreted == compiled_vm == compiled_vm_json == opa
    explained_rules: set[str] = set()
    allows = 0
    for index in range(0, len(cases), 2):
        content = cases[index][1]
        explained_rules |= _check_explained(content, opa[index + 1], opa[index])
        allows += opa[index]["allow"] and bool(opa[index + 1]["allowed_by"])
    assert (ACTION_RULES | MANIFEST_RULES) - explained_rules == set()
    assert allows > 100


# -- the runtime and the CLI -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def payments(envelope_vectors):
    content = copy.deepcopy(envelope_vectors["valid"]["content"])
    content["agent"]["capabilities"]["allowed_tools"].append("payments:*")
    content.setdefault("compliance", {})["require_audit_logging"] = False
    return unsigned_policy(content)


def test_the_enforcer_explains_identically_on_both_engines(payments, opa_bin, tmp_path):
    compiled = compile_policy(payments, load_extensions([EXAMPLE]))
    embedded = PolicyEnforcer(payments, engine=EmbeddedEngine.from_compiled(compiled), cache=False)
    bundle = build_bundle(compiled, signer=BundleSigner(bundle_key().private))
    with serve_bundles(opa_bin, {"payments": bundle}, tmp_path) as server:
        external = PolicyEnforcer(payments, engine=OPAEngine(server.url), cache=False)
        refund = {"type": "tool", "name": "payments:refund", "args": {"amount": 401}}
        for action in (refund, {"type": "tool", "name": "payments:refund", "args": {"amount": 400}},
                       {"type": "tool", "name": "shell"}, {"type": "network", "host": "evil.example.com"}):
            ours, theirs = embedded.explain(action), external.explain(action)
            assert ours == theirs and ours.raw == theirs.raw, action
        denied = embedded.explain(refund)
        assert [(v.rule, v.entry) for v in denied.violations] == [("ext.refund_limit", "ext.refund")]
        assert denied.allowed_by == (AllowedBy("permissions.tools.allowed_tools", "payments:*"),)
        external.close()
    embedded.close()


def test_explain_counts_caches_and_logs_nothing(policy):
    events: list[Any] = []
    enforcer = PolicyEnforcer(policy, decision_log=events.append, on_violation=lambda v: events.append(v))
    decision = enforcer.explain({"type": "tool", "name": "shell"})
    assert not decision.allow and decision.violations[0].entry is not None
    assert events == [] and enforcer.counters.snapshot().as_dict() == {"allowed": 0, "denied": 0}
    enforcer.close()


def test_decision_explain_reads_out_entries_and_matches():
    decision = Decision.from_result({
        "allow": False, "policy": {},
        "violations": [{"rule": "tool.blocked", "message": "tool 'x' is blocked", "entry": "x*"}],
        "allowed_by": [{"setting": "permissions.tools.allowed_tools", "entry": "*"}],
    })
    assert decision.violations == (Violation("tool.blocked", "tool 'x' is blocked", "x*"),)
    assert decision.explain() == ("deny\n  tool.blocked: tool 'x' is blocked (entry: x*)\n"
                                  "  matched permissions.tools.allowed_tools: *")
    # an engine answer with a malformed explanation is refused, so it can only deny
    for bad in ({"setting": 1, "entry": "x"}, "x"):
        with pytest.raises(EngineResponseError):
            Decision.from_result({"allow": True, "violations": [], "allowed_by": [bad]})


def test_cli_eval_explain(capsys, tmp_path):
    example = differential.EXAMPLES[0]
    keyring = example.parent / "keyring.json"
    base = ["policy", "eval", "--file", str(example), "--keyring", str(keyring), "--explain"]
    code = main([*base, "--format", "text", "--action", '{"type": "filesystem", "path": "/workspace/secrets/a.txt"}'])
    out = capsys.readouterr().out
    assert code == 3
    assert "fs.blocked: path '/workspace/secrets/a.txt' is blocked by the workspace policy (entry: /workspace/secrets/*)" in out
    assert "matched permissions.filesystem.allowed_paths: /workspace/*" in out
    code = main([*base, "--action", '{"type": "tool", "name": "web_search"}'])
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and document["allowed_by"] == [{"setting": "permissions.tools.allowed_tools", "entry": "web_search"}]
    manifest = tmp_path / "sekuire.yml"
    manifest.write_text("agent:\n  name: a\n  llm:\n    provider: openai\n    model: gpt-4o\n", encoding="utf-8")
    assert main([*base, "--manifest", str(manifest)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert {"setting": "agent.models.allowed_models", "entry": "gpt-4o"} in document["allowed_by"]


def test_the_root_is_under_no_path_glob_and_its_explanation_says_so(envelope_vectors):
    """"/*" neither allows nor blocks "/" itself, so no path entry explains it (a mutant of path_entry that named
    "/*" for the root survived the corpus, where no policy lists "/*")."""
    content = copy.deepcopy(envelope_vectors["valid"]["content"])
    content["compliance"]["require_audit_logging"] = False
    content["permissions"]["filesystem"].update(allowed_paths=["/*"], blocked_paths=["/*"])
    with PolicyEnforcer(unsigned_policy(content), cache=False) as enforcer:
        explained = enforcer.explain({"type": "filesystem", "path": "/", "operation": "list"})
    assert [(v.rule, v.entry) for v in explained.violations] == [("fs.not_allowed", "permissions.filesystem.allowed_paths")]
    assert explained.allowed_by == (AllowedBy("permissions.filesystem.allowed_operations", "list"),)
