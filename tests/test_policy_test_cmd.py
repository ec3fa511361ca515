"""``sekuire policy test``: authors' decision tests on the embedded engine and the real OPA, with JUnit output."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from sekuire.compiler.cli import main

from .conftest import ROOT
from .security_support import unsigned_policy

EXTENSIONS = ROOT / "policies" / "examples" / "extensions"
CASES = """
cases:
  - name: refunds up to 400 pass
    action: {type: tool, name: "payments:refund", args: {amount: 400}}
    expect: allow
  - name: a refund of 401 is refused
    action: {type: tool, name: "payments:refund", args: {amount: 401}}
    expect: deny
    rules: [ext.refund_limit]
  - name: rate limits decide on the usage given
    action: {type: rate_limit, kind: request, usage: {minute: 60, hour: 60}}
    expect: deny
    rules: [rate_limit.exceeded]
"""


@pytest.fixture()
def policy_file(tmp_path: Path, envelope_vectors) -> Path:
    content = copy.deepcopy(envelope_vectors["valid"]["content"])
    content["agent"]["capabilities"]["allowed_tools"].append("payments:*")
    policy = unsigned_policy(content)
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"policy_id": policy.policy_id, "workspace_id": policy.workspace_id,
                                "version": policy.version, "status": "active", "hash": policy.hash,
                                "content": policy.raw_content}))
    return path


def _run(capsys, tmp_path: Path, policy_file: Path, cases: str, *extra: str) -> tuple[int, str]:
    case_file = tmp_path / "cases.yml"
    case_file.write_text(cases)
    code = main(["policy", "test", str(case_file), "--file", str(policy_file), "--allow-unsigned",
                 "--extension", str(EXTENSIONS), *extra])
    return code, capsys.readouterr().out


def test_every_case_passes_on_both_engines(capsys, tmp_path, policy_file, opa_bin, monkeypatch):
    monkeypatch.setenv("SEKUIRE_OPA", opa_bin)
    code, out = _run(capsys, tmp_path, policy_file, CASES, "--engine", "both")
    assert code == 0 and out.strip().splitlines()[-1] == "3 passed, 0 failed"


def test_a_failing_case_fails_the_run_and_junit_says_which(capsys, tmp_path, policy_file, opa_bin, monkeypatch):
    monkeypatch.setenv("SEKUIRE_OPA", opa_bin)
    wrong = CASES + "  - name: wrong on purpose\n    action: {type: tool, name: web_search}\n    expect: deny\n"
    code, out = _run(capsys, tmp_path, policy_file, wrong, "--engine", "both", "--format", "junit")
    suite = ElementTree.fromstring(out)
    assert code == 3 and suite.get("tests") == "4" and suite.get("failures") == "1"
    failing = [case for case in suite.iter("testcase") if case.find("failure") is not None]
    assert [case.get("name") for case in failing] == ["wrong on purpose"]
    assert {f.text.split(":")[0] for f in failing[0].iter("failure")} == {"embedded", "opa"}


def test_expected_rules_are_compared(capsys, tmp_path, policy_file):
    cases = "- action: {type: tool, name: shell}\n  expect: deny\n  rules: [tool.blocked]\n"
    code, out = _run(capsys, tmp_path, policy_file, cases, "--format", "json")
    report = json.loads(out)
    assert code == 3 and report["failed"] == 1 and "expected rules ['tool.blocked']" in report["cases"][0]["failures"][0]


@pytest.mark.parametrize("cases", ["[]", "- {expect: allow}\n", "- {action: {type: tool, name: x}, expect: maybe}\n",
                                   "- {action: {type: tool, name: x}, expect: allow, extra: 1}\n", "{{{"])
def test_a_malformed_case_file_is_one_line(capsys, tmp_path, policy_file, cases):
    case_file = tmp_path / "cases.yml"
    case_file.write_text(cases)
    code = main(["policy", "test", str(case_file), "--file", str(policy_file), "--allow-unsigned"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and str(case_file) in err
