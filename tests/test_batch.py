"""check_many and allowed_tools: the decision ``check`` gives, in order, for each action; tool names in one query."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sekuire.compiler import compile_policy
from sekuire.compiler.rego.extensions import Extension
from sekuire.runtime import EmbeddedEngine, OPAEngine, PolicyEnforcer
from sekuire.runtime.batch import listing_path

from .security_support import serve_bundles, signed_bundle, unsigned_policy

NAMES = ["web_search", "shell", "file_read", "file_delete", "github:create_issue", "payments:refund", "x\x00y", "",
         "Web_Search", "github:delete_repo"]


@pytest.fixture(scope="module")
def quiet(envelope_vectors_module) -> Any:
    content = copy.deepcopy(envelope_vectors_module["valid"]["content"])
    content.setdefault("compliance", {})["require_audit_logging"] = False
    return unsigned_policy(content)


@pytest.fixture(scope="module")
def envelope_vectors_module():
    import json

    from .conftest import ENVELOPE_VECTORS

    return json.loads(ENVELOPE_VECTORS.read_text(encoding="utf-8"))


class Counting(EmbeddedEngine):
    paths: list[str] = []

    def evaluate(self, path: str, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
        type(self).paths.append(path)
        return super().evaluate(path, input)


def _decisions(enforcer: PolicyEnforcer, actions: list[dict[str, Any]]) -> list[tuple[bool, list[tuple[str, str]]]]:
    return [(d.allow, [(v.rule, v.message) for v in d.violations]) for d in enforcer.check_many(actions)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(NAMES), st.text(max_size=12)), max_size=30),
       st.sampled_from(["tool", "capability"]))
def test_check_many_gives_what_check_gives(quiet, names, kind):
    """The same allow, rules and messages as one check each (a bad action: input.invalid, not an exception)."""
    actions = [{"type": kind, "name": n} for n in names] + [{"type": "network", "host": "api.openai.com"}]
    _assert_as_check_decides(quiet, actions)


def _assert_as_check_decides(policy: Any, actions: list[dict[str, Any]]) -> list[bool]:
    """check_many's decisions equal one check each (a bad action: input.invalid, not an exception); the allows."""
    with PolicyEnforcer(policy, cache=False) as batch, PolicyEnforcer(policy, cache=False) as single:
        got = _decisions(batch, actions)
        for action, (allow, violations) in zip(actions, got, strict=True):
            try:
                decision = single.check(action)
            except Exception:  # noqa: BLE001 - a bad action: check_many reports input.invalid instead of raising
                assert not allow and [rule for rule, _ in violations] == ["input.invalid"]
                continue
            assert (allow, violations) == (decision.allow, [(v.rule, v.message) for v in decision.violations]), action
    return [allow for allow, _ in got]


@pytest.mark.parametrize("cache", [True, False])  # without a cache (or a log) the batch takes its lean path
def test_allowed_names_are_decided_in_one_query(quiet, cache):
    Counting.paths = []
    names = ["web_search", "file_read", "github:create_issue", "shell", "web_search"]
    with PolicyEnforcer(quiet, engine=Counting.from_policy(quiet), cache=cache) as enforcer:
        decisions = enforcer.check_many([{"type": "tool", "name": n} for n in names])
        enforcer.engine.close()
    assert [d.allow for d in decisions] == [True, True, True, False, True]
    # one batch query: the denied name's violations come with it
    assert Counting.paths == [listing_path(enforcer.path)]
    assert [(v.rule, v.message) for v in decisions[3].violations] == [("tool.not_allowed", "tool 'shell' is not in the allowed tools")]
    assert enforcer.counters.snapshot().as_dict() == {"allowed": 4, "denied": 1}


def test_with_extensions_the_batch_is_not_trusted(quiet):
    deny_all = Extension("all.rego", "all", 'package ext.all\n\ndeny contains {"rule": "ext.all", "message": "no"} if true\n')
    compiled = compile_policy(quiet, [deny_all])
    with PolicyEnforcer(quiet, engine=EmbeddedEngine.from_compiled(compiled)) as enforcer:
        assert [d.allow for d in enforcer.check_many([{"type": "tool", "name": "web_search"}])] == [False]
        enforcer.engine.close()


def test_check_many_against_the_real_opa(quiet, opa_bin, tmp_path):
    actions = [{"type": "tool", "name": n} for n in NAMES]
    with serve_bundles(opa_bin, {"quiet": signed_bundle(quiet)}, tmp_path) as opa:
        with OPAEngine(opa.url) as engine, PolicyEnforcer(quiet, engine=engine, cache=False) as remote, \
                PolicyEnforcer(quiet, cache=False) as local:
            assert _decisions(remote, actions) == _decisions(local, actions)
            url = f"{opa.url}/v1/data/{listing_path(remote.path)}"
            clean = [name for name in NAMES if name.isprintable()]
            listing = httpx.post(url, json={"input": {"names": clean}}, timeout=10).json()["result"]
            dirty = httpx.post(url, json={"input": {"names": NAMES}}, timeout=10).json()["result"]
    assert listing["exact"] is True and dirty["exact"] is False  # a control character anywhere: decide one by one
    decided = dict(zip(NAMES, _decisions(PolicyEnforcer(quiet), actions)))
    assert listing["allowed"] == sorted(name for name in clean if decided[name][0])


def test_gateway_allowed_tools_keeps_order(url, vector_keyring):
    from sekuire.runtime import PolicyClient
    from sekuire.runtime.gateway import PolicyGateway

    names = ["shell", "web_search", "file_read", "file_delete", "web_search"]
    with PolicyClient(url, keyring=vector_keyring) as client:
        gateway = PolicyGateway(client, "ws_abc123")
        gateway.initialize()
        expected = [n for n in names if gateway.enforcer.check({"type": "tool", "name": n}).allow]
        assert gateway.allowed_tools(names) == expected and "web_search" in expected and "shell" not in expected
        gateway.close()


@pytest.mark.parametrize("tamper", [
    lambda answer: {**answer, "allowed": [*answer["allowed"], "shell"]},  # shell allowed and denied at once
    lambda answer: {**answer, "denied": []},  # a name neither allowed nor denied
    lambda answer: {**answer, "allowed": [*answer["allowed"], "not_asked"]},  # a name nobody asked about
    lambda answer: {**answer, "denied": [["shell", "tool.not_allowed"]]},  # not [name, rule, message]
    lambda answer: {**answer, "exact": "yes"},
])
def test_an_off_contract_listing_is_not_trusted(quiet, tamper):
    """Whatever the listing query answers, a name gets the decision its own query gives: never a wrong allow."""

    class Tampering(EmbeddedEngine):
        def evaluate(self, path: str, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
            answer = super().evaluate(path, input)
            return tamper(answer) if path.endswith("/tool_listing") else answer

    names = ["web_search", "shell", "file_read"]
    with PolicyEnforcer(quiet, engine=Tampering.from_policy(quiet), cache=False) as enforcer:
        decisions = enforcer.check_many([{"type": "tool", "name": n} for n in names])
        enforcer.engine.close()
    assert [d.allow for d in decisions] == [True, False, True]
    assert [v.rule for v in decisions[1].violations] == ["tool.not_allowed"]


def test_check_many_with_blocked_globs_over_exact_allows(envelope_vectors_module):
    """A blocked glob beats an exact allow in the batch as in single decisions (a mutant that let the exact-name
    listing rule ignore blocked globs survived the property above, whose policy blocks no glob)."""
    content = copy.deepcopy(envelope_vectors_module["valid"]["content"])
    content.setdefault("compliance", {})["require_audit_logging"] = False
    content["agent"]["capabilities"]["denied_tools"] = ["web_*", "file_delete", "*:delete_*"]
    content["agent"]["capabilities"]["allowed_tools"] += ["github:delete_repo", "web_fetch"]
    names = [*NAMES, "web_fetch", "github:delete_repo", "file_write"]
    decided = _assert_as_check_decides(unsigned_policy(content), [{"type": "tool", "name": n} for n in names])
    allows = dict(zip(names, decided, strict=True))
    assert allows["web_search"] is False and allows["github:delete_repo"] is False and allows["file_read"] is True
