"""The bypass corpus (tests/data/bypass_corpus.json): hostile actions against both engines, real OPA and the reference.

Each case was written by hand from the spec (see tests/data/make_bypass_corpus.py).
It is decided

- through :meth:`PolicyEnforcer.check` (the runtime's normalisation, then the
  query) with the embedded engine and with a real ``opa run --server`` on
  loopback that activated the *signed* bundles of the example policies; both
  must give ``expect``, and so must tests/reference.py on the action as its own
  normaliser (not the runtime's) reads it;
- as a direct query with the action exactly as sent (what a client of OPA that
  skips the runtime gets), by the same OPA, by the embedded engine and by the
  reference; all must give ``direct``, and the two engines the very same document.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sekuire.compiler import Policy
from sekuire.runtime import InvalidActionError, OPAEngine, PolicyEnforcer

from . import reference
from .security_support import (
    EXAMPLE_NAMES,
    decision_of,
    load_example,
    serve_bundles,
    signed_bundle,
)

CORPUS = Path(__file__).parent / "data" / "bypass_corpus.json"
CASES: list[dict[str, Any]] = json.loads(CORPUS.read_text(encoding="utf-8"))
CONTEXT = {"agent": "bypass-corpus"}



@pytest.fixture(scope="module")
def policies() -> dict[str, Policy]:
    return {name: load_example(name) for name in EXAMPLE_NAMES}


@pytest.fixture(scope="module")
def opa_url(opa_bin, policies, tmp_path_factory) -> Iterator[str]:
    bundles = {name: signed_bundle(policy) for name, policy in policies.items()}
    with serve_bundles(opa_bin, bundles, tmp_path_factory.mktemp("bundles")) as server:
        yield server.url


@pytest.fixture(scope="module")
def enforcers(policies, opa_url) -> Iterator[dict[str, dict[str, PolicyEnforcer]]]:
    """engine kind -> policy name -> an uncached enforcer (every case is a fresh query)."""
    engine = OPAEngine(opa_url)
    made = {
        "embedded": {name: PolicyEnforcer(policy, cache=False) for name, policy in policies.items()},
        "opa": {name: PolicyEnforcer(policy, engine=engine, cache=False) for name, policy in policies.items()},
    }
    yield made
    for enforcer in made["embedded"].values():
        enforcer.close()
    engine.close()


def _through_runtime(enforcer: PolicyEnforcer, action: Any) -> dict[str, Any]:
    try:
        decision = enforcer.check(action)
    except InvalidActionError:
        return {"error": "invalid_action"}
    return {"allow": decision.allow, "rules": sorted(v.rule for v in decision.violations)}


def _normalised_input(action: Any) -> dict[str, Any]:
    """The input the runtime should send for ``action``, by the reference's own normaliser (usage zero)."""
    normalised = reference.normalize_action(action)
    assert normalised is not None, "the reference refuses an action the corpus expects a decision for"
    if normalised["type"] == "rate_limit":
        normalised["usage"] = {"minute": 0, "hour": 0}
    return {"action": normalised, "context": CONTEXT}


def test_corpus_is_large_and_covers_every_kind_of_trick() -> None:
    assert len(CASES) >= 300
    assert len({case["id"] for case in CASES}) == len(CASES)
    categories = Counter(case["category"] for case in CASES)
    assert {"host", "path", "name", "model"} <= set(categories) and min(categories.values()) >= 20
    assert {case["policy"] for case in CASES} == set(EXAMPLE_NAMES)
    outcomes = Counter(
        "error" if "error" in case["expect"] else "allow" if case["expect"]["allow"] else "deny" for case in CASES
    )
    # A corpus that only denies would prove little: the allowed spellings are what a bypass hides behind.
    assert outcomes["allow"] >= 100 and outcomes["deny"] >= 250 and outcomes["error"] >= 50
    for case in CASES:
        for decision in (case["expect"], case["direct"]):
            assert decision == {"error": "invalid_action"} or decision["allow"] == (decision["rules"] == [])


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_case(case, enforcers, policies) -> None:
    name, action = case["policy"], case["action"]
    content = policies[name].raw_content

    for kind in ("embedded", "opa"):
        assert _through_runtime(enforcers[kind][name], action) == case["expect"], kind
    if "error" not in case["expect"]:
        assert decision_of(reference.decide(content, _normalised_input(action))) == case["expect"], "reference"
    else:
        assert reference.normalize_action(action) is None, "reference: the runtime refuses this argument"

    direct_input = {"action": action, "context": CONTEXT}
    opa = enforcers["opa"][name]
    from_opa = opa.engine.evaluate(opa.path, direct_input)
    assert decision_of(from_opa) == case["direct"], "opa, direct"
    assert decision_of(reference.decide(content, direct_input)) == case["direct"], "reference, direct"
    embedded = enforcers["embedded"][name]
    assert embedded.engine.evaluate(embedded.path, direct_input) == from_opa, "embedded, direct"
