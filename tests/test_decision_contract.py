"""The decision contract in Python, pinned: the rule id of a missing decision, immutable values, their defaults,
how an engine's answer is read and refused, and how long quoted values are cut.

Python mutants of ``runtime/decision.py`` survived the enforcer and batch suites, which compare against the
module's own constants and read decisions only through the enforcer (docs/security.md, "Mutation testing").
"""

from __future__ import annotations

import dataclasses

import pytest
from sekuire.runtime import Decision, Violation
from sekuire.runtime.decision import ENGINE_UNAVAILABLE
from sekuire.runtime.errors import EngineResponseError


def test_a_missing_decision_is_the_documented_engine_unavailable_deny():
    assert ENGINE_UNAVAILABLE == "engine.unavailable"  # a rule id of the contract (docs), not just a constant
    failure = Decision.failure("OPA is down")
    assert (failure.allow, failure.violations) == (False, (Violation("engine.unavailable", "OPA is down"),))


def test_decisions_and_violations_are_immutable_values_with_empty_defaults():
    decision = Decision(True)
    assert (decision.violations, decision.policy, decision.raw, decision.allowed_by) == ((), {}, {}, ())
    assert Decision(True).policy is not Decision(True).policy  # a fresh mapping each, never shared
    assert Violation("r", "m").entry is None
    assert hash(Decision(True)) == hash(Decision(True))  # policy and raw (dicts) are left out of the hash
    assert "raw" not in repr(decision)
    for value, name in ((decision, "allow"), (Violation("r", "m"), "rule")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, name, None)


def test_an_answer_is_read_with_its_entries():
    raw = {"allow": False, "violations": [{"rule": "tool.blocked", "message": "no", "entry": "shell"}], "policy": {}}
    assert Decision.from_result(raw).violations == (Violation("tool.blocked", "no", "shell"),)


@pytest.mark.parametrize(("raw", "message"), [
    ({"allow": "true", "violations": []}, "the decision lacks a boolean 'allow' or a 'violations' array"),
    ({"allow": True}, "the decision lacks a boolean 'allow' or a 'violations' array"),
    ({"allow": False, "violations": [{"rule": 1, "message": "m"}]}, "a violation lacks a string 'rule' or 'message'"),
    ({"allow": True, "violations": [{"rule": "r", "message": "m"}]}, "the decision says allow=True with 1 violation(s)"),
    ({"allow": False, "violations": []}, "the decision says allow=False with 0 violation(s)"),
])
def test_an_off_contract_answer_is_refused_in_its_own_words(raw, message):
    with pytest.raises(EngineResponseError) as info:
        Decision.from_result(raw)
    assert str(info.value) == message


def test_a_long_quoted_value_in_a_message_is_cut_and_a_short_one_kept():
    def shown(value: str) -> str:
        raw = {"allow": False, "violations": [{"rule": "tool.blocked", "message": f"tool '{value}' is blocked"}]}
        return Decision.from_result(raw).violations[0].message

    assert shown("x" * 200) == f"tool '{'x' * 200}' is blocked"  # at the limit: whole
    assert shown("x" * 201) == f"tool '{'x' * 200}...(cut, 201 chars)' is blocked"
