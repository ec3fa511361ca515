"""The embedded engine's own regorus binding (``sekuire.runtime._regorus``, built from rust/).

What the binding promises and the runtime relies on: one engine shared by many
threads gives exactly the single-threaded answers; the GIL is released while
regorus evaluates (other Python threads make progress meanwhile); regorus
errors, undefined results and panics map to Python exceptions (and then to
EngineError); RUST_BACKTRACE in the environment changes nothing; Python
inputs are read exactly as ``json.dumps`` would write them and results exactly
as ``json.loads`` would read regorus' JSON.
"""

from __future__ import annotations

import enum
import json
import os
import re
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sekuire.compiler.cli.main import version_text
from sekuire.compiler.version import REGORUS_VERSION
from sekuire.runtime import EmbeddedEngine, EngineResponseError, _regorus
from sekuire.runtime.errors import InvalidActionError

from .conftest import ROOT

TOOL = {"action": {"type": "tool", "name": "web_search"}, "context": {"agent": "a", "workspace": "ws_abc123"}}
BLOCKED = {"action": {"type": "tool", "name": "file_delete"}, "context": {"agent": "a", "workspace": "ws_abc123"}}
NETWORK = {
    "action": {"type": "network", "host": "api.openai.com", "protocol": "https"},
    "context": {"agent": "a", "workspace": "ws_abc123"},
}
ECHO = [("echo.rego", "package echo\n\nout := input\n")]

# Long enough to be caught in the act: the RVM gives up after 25,000 instructions, the interpreter finishes.
SLOW = [("slow.rego", "package slow\n\nresult := {\"n\": count([x | some x in numbers.range(1, input.n); x % 7 == 0])}\n")]


def test_the_cli_names_the_regorus_the_engine_is_built_from():
    lock = (ROOT / "rust" / "Cargo.lock").read_text(encoding="utf-8")
    locked = re.search(r'name = "regorus"\nversion = "([^"]+)"', lock)
    assert locked is not None and locked.group(1) == REGORUS_VERSION
    assert f"regorus {REGORUS_VERSION}" in version_text()


def test_threads_sharing_one_engine_get_the_single_threaded_answers(compiled):
    """16 threads on one engine, the decision and the manifest entry point compiled concurrently on first use."""
    engine = EmbeddedEngine.from_compiled(compiled)
    manifest = {"agent": {"name": "bot", "llm": {"provider": "openai", "model": "gpt-4o"}}, "tools": ["web_search", "x"]}
    queries = [(compiled.decision_path, TOOL), (compiled.decision_path, BLOCKED), (compiled.decision_path, NETWORK),
               (compiled.manifest_path, manifest)] * 10
    reference = EmbeddedEngine.from_compiled(compiled)
    expected = [reference.evaluate(path, doc) for path, doc in queries]
    assert {e["allow"] for e in expected} == {True, False}, "the mix must hold allows and denies"
    start = threading.Barrier(16)
    results: dict[int, list[dict[str, Any]]] = {}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            start.wait()
            order = queries[index % len(queries):] + queries[:index % len(queries)]
            answers = [engine.evaluate(path, doc) for path, doc in order]
            shift = index % len(queries)
            results[index] = answers[len(queries) - shift:] + answers[:len(queries) - shift]
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [results[i] for i in range(16)] == [expected] * 16
    engine.close()
    reference.close()


def test_the_gil_is_released_while_regorus_evaluates():
    """Another Python thread counts while one evaluation runs; with the GIL held it could not count at all.

    The switch interval is made huge, so the only way the counter thread can run during
    the call is the binding letting go of the GIL (the counter yields it back by itself).
    """
    policy = _regorus.Policy(SLOW, "{}")
    rule = 'data["slow"]["result"]'
    policy.compile(rule)
    count = 0
    stop = threading.Event()
    running = threading.Event()

    def counter() -> None:
        nonlocal count
        while not stop.is_set():
            count += 1
            running.set()
            if count % 256 == 0:
                time.sleep(0)  # releases the GIL: the main thread takes it back when it needs it

    old_interval = sys.getswitchinterval()
    thread = threading.Thread(target=counter)
    try:
        sys.setswitchinterval(100.0)
        thread.start()
        running.wait()
        before = count
        result = policy.evaluate(rule, {"n": 400_000})
        during = count - before
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(old_interval)
    assert result == {"n": 57_142}
    assert during > 1_000, f"the counter thread made {during} steps during the evaluation"


def test_binding_errors_map_to_exception_types():
    with pytest.raises(_regorus.CompileError, match="data"):
        _regorus.Policy([], "{not json")
    broken = _regorus.Policy([("p.rego", "package p\n\nallow if {\n")], "{}")
    with pytest.raises(_regorus.CompileError):
        broken.compile('data["p"]["allow"]')
    modules = [("p.rego", 'package p\n\nx := input.a * input.a\n\nmaybe := 1 if input.a\n')]
    policy = _regorus.Policy(modules, "{}")
    with pytest.raises(_regorus.CompileError):
        policy.evaluate('data["p"]["nothing"]', {})
    with pytest.raises(_regorus.EvalError, match="overflow"):
        policy.evaluate('data["p"]["x"]', {"a": 10**300})
    with pytest.raises(_regorus.EvalError, match="overflow"):
        policy.interpret('data["p"]["x"]', {"a": 10**300})
    with pytest.raises(_regorus.UndefinedError):
        policy.evaluate('data["p"]["maybe"]', {"a": False})
    # The VM that failed was dropped; the pool still answers.
    assert policy.evaluate('data["p"]["x"]', {"a": 3}) == 9
    for error in (_regorus.CompileError, _regorus.EvalError, _regorus.UndefinedError):
        assert issubclass(error, _regorus.RegorusError) and not issubclass(error, (TypeError, ValueError))
    with pytest.raises(_regorus.EvalError, match="regorus panicked: on purpose"):
        _regorus._panic_for_test("on purpose")


def test_input_errors_are_type_and_value_errors_as_json_dumps_raises():
    policy = _regorus.Policy(ECHO, "{}")
    rule = 'data["echo"]["out"]'
    for bad, error in (({1, 2}, TypeError), (b"x", TypeError), (float("nan"), ValueError), (float("inf"), ValueError),
                       ({(1, 2): 1}, TypeError), ({"k": object()}, TypeError)):
        with pytest.raises(error):
            json.dumps(bad, allow_nan=False)
        with pytest.raises(error):
            policy.evaluate(rule, {"v": bad})
    deep: Any = "leaf"
    for _ in range(_regorus.MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(ValueError, match="nests deeper"):
        policy.evaluate(rule, deep)
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="nests deeper"):
        policy.evaluate(rule, cyclic)


def test_engine_maps_binding_errors_to_engine_errors():
    modules = {"p.rego": 'package p\n\nx := {"v": input.a * input.a} if input.a\n'}
    with EmbeddedEngine(modules, {}) as engine:
        with pytest.raises(EngineResponseError, match="^p/x: numeric overflow in multiplication"):
            engine.evaluate("p/x", {"a": 10**300})
        with pytest.raises(EngineResponseError, match="undefined"):
            engine.evaluate("p/x", {})
        with pytest.raises(InvalidActionError, match="not JSON"):
            engine.evaluate("p/x", {"a": float("nan")})
        assert engine.evaluate("p/x", {"a": 2}) == {"v": 4}
    with pytest.raises(EngineResponseError, match=r"^cannot compile .*: expecting expression \(at p.rego:4:1\)$"):
        EmbeddedEngine({"p.rego": "package p\n\nallow if {\n"}, {}, entry_points=["p/allow"])
    with pytest.raises(EngineResponseError, match="cannot load the policy"):
        EmbeddedEngine({}, {"d": _nested(_regorus.MAX_DEPTH + 5)})


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"k": value}
    return value


_BACKTRACE_PROBE = """
import json
from sekuire.runtime import EmbeddedEngine, EngineError, _regorus
out = []
try:
    EmbeddedEngine({"p.rego": "package p\\n\\nallow if {\\n"}, {}, entry_points=["p/allow"])
except EngineError as exc:
    out.append(str(exc))
engine = EmbeddedEngine({"p.rego": 'package p\\n\\nx := {"v": input.a * input.a} if input.a\\n'}, {})
for doc in ({"a": 10**300}, {}, {"a": 3}):
    try:
        out.append(engine.evaluate("p/x", doc))
    except EngineError as exc:
        out.append(str(exc))
try:
    _regorus._panic_for_test("on purpose")
except _regorus.RegorusError as exc:
    out.append(str(exc))
print(json.dumps(out))
"""


def test_rust_backtrace_in_the_environment_changes_nothing():
    """Same answers and messages, nothing on stderr (not even for a panic), whatever RUST_BACKTRACE says."""
    runs = {}
    for setting in (None, "0", "1", "full"):
        env = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}
        if setting is not None:
            env["RUST_BACKTRACE"] = setting
        result = subprocess.run([sys.executable, "-c", _BACKTRACE_PROBE], capture_output=True, text=True, env=env,
                                cwd=ROOT, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", f"RUST_BACKTRACE={setting} printed: {result.stderr[:500]}"
        runs[setting] = json.loads(result.stdout)
    assert runs["1"] == runs["full"] == runs["0"] == runs[None]
    messages = runs[None]
    assert messages[0].startswith("cannot compile") and "\n" not in messages[0]
    assert messages[2] == "p/x: undefined (no rule at this path answered)" and messages[3] == {"v": 9}
    assert messages[4] == "regorus panicked: on purpose"
    assert all("backtrace" not in str(m).lower() and "stack backtrace" not in str(m) for m in messages)


class Color(enum.IntEnum):
    RED = 7


class Name(str, enum.Enum):
    BOB = "bob"


def test_python_inputs_are_read_as_json_dumps_writes_them():
    policy = _regorus.Policy(ECHO, "{}")
    rule = 'data["echo"]["out"]'
    doc = {"i": 1, "neg": -5, "big": 2**70, "negbig": -(2**80), "f": 1.5, "whole": 2.0, "tiny": 1e-7, "huge": 1e300,
           "t": (1, "a"), "e": Color.RED, "s": Name.BOB, "n": None, "b": True,
           1: "int key", 2.5: "float key", False: "bool key", None: "none key", "nested": {"l": [[], {}, ""]}}
    via_json = json.loads(policy.evaluate_json(rule, json.dumps(doc)))
    assert policy.evaluate(rule, doc) == via_json == json.loads(json.dumps(doc))
    assert policy.interpret(rule, doc) == via_json


def _json_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
        | st.dictionaries(st.text() | st.integers() | st.booleans() | st.none(), inner, max_size=4),
        max_leaves=20,
    )


_EXACT = 2**53
_plain = st.none() | st.booleans() | st.integers() | st.text()


@settings(max_examples=300, deadline=None)
@given(_json_values(_plain))
def test_objects_and_json_text_give_the_same_answers(value):
    rule = 'data["echo"]["out"]'
    as_object = _ECHO_POLICY.evaluate(rule, value)
    as_text = json.loads(_ECHO_POLICY.evaluate_json(rule, json.dumps(value)))
    assert as_object == as_text
    assert json.dumps(as_object, sort_keys=True) == json.dumps(as_text, sort_keys=True)
    # Objects in, text out (the enforcer's path): the same value, written compactly with sorted keys.
    text = _ECHO_POLICY.evaluate_text(rule, value)
    assert json.loads(text) == as_object
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@settings(max_examples=300, deadline=None)
@given(_json_values(_plain.filter(lambda v: not isinstance(v, int) or abs(v) <= _EXACT)
                    | st.floats(min_value=-_EXACT, max_value=_EXACT)))
def test_objects_pass_through_regorus_exactly(value):
    """Numbers regorus holds exactly (integers and floats to 2^53) come back as json.loads(json.dumps(v)) has them.

    (regorus' JSON text path parses floats less precisely than this, in the last digit.)
    """
    assert _ECHO_POLICY.evaluate('data["echo"]["out"]', value) == json.loads(json.dumps(value))


_ECHO_POLICY = _regorus.Policy(ECHO, "{}")
