"""Tool and capability arguments: plain JSON only, bounded, copied, and in input.action.args for every engine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from sekuire.runtime import EmbeddedEngine, InvalidActionError, PolicyEnforcer
from sekuire.runtime.args import MAX_ARGS_BYTES, MAX_ARGS_DEPTH, check_args


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_plain_json_is_copied_tuples_become_lists():
    original = {"amount": 400, "tags": ("a", "b"), "ok": True, "none": None, "rate": 0.5, "deep": {"x": [1]}}
    copied = check_args(original)
    assert copied == {"amount": 400, "tags": ["a", "b"], "ok": True, "none": None, "rate": 0.5, "deep": {"x": [1]}}
    original["deep"]["x"].append(2)  # type: ignore[index]
    assert copied["deep"]["x"] == [1]  # a copy: later changes by the caller are not what was decided


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1], "must be a JSON object"),
        ({1: "x"}, "keys must be strings"),
        ({"x": object()}, "object is not a JSON value"),
        ({"x": float("nan")}, "not a JSON number"),
        ({"x": float("inf")}, "not a JSON number"),
        ({"x": 2**53 + 1}, "beyond"),
        ({"x": "\ud800"}, "lone surrogate"),
        ({"x": b"bytes"}, "bytes is not a JSON value"),
        (_nested(MAX_ARGS_DEPTH + 1), "deeper than"),
        ({"x": "y" * MAX_ARGS_BYTES}, "over the"),
    ],
)
def test_anything_else_is_a_bad_argument(value, message):
    with pytest.raises(InvalidActionError, match=message):
        check_args(value)
    assert check_args(_nested(MAX_ARGS_DEPTH)) is not None


class Recording(EmbeddedEngine):
    """The embedded engine, keeping each input it is asked about."""

    inputs: list[Mapping[str, Any]] = []

    def evaluate(self, path: str, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
        type(self).inputs.append(input)
        return super().evaluate(path, input)


def test_args_reach_the_engine_and_key_the_cache(policy):
    Recording.inputs = []
    with PolicyEnforcer(policy, engine=Recording.from_policy(policy)) as enforcer:
        assert enforcer.enforce_tool("web_search", {"query": "a"}).allow
        assert enforcer.enforce_tool("web_search", {"query": "a"}).allow  # the same args: cached
        assert enforcer.enforce_tool("web_search", {"query": "b"}).allow  # other args: decided again
        assert enforcer.enforce_capability("web_search", {"n": 1}).allow
        enforcer.engine.close()
    seen = [i["action"].get("args") for i in Recording.inputs]
    assert seen == [{"query": "a"}, {"query": "b"}, {"n": 1}]


def test_bad_args_are_refused_before_any_decision(policy):
    Recording.inputs = []
    with PolicyEnforcer(policy, engine=Recording.from_policy(policy)) as enforcer:
        with pytest.raises(InvalidActionError):
            enforcer.enforce_tool("web_search", {"when": object()})
        enforcer.engine.close()
    assert Recording.inputs == []
