"""The runtime's normaliser (runtime/normalize.py) against an independent oracle (tests/reference.py) on raw input.

The reference normalises with its own grammar (explicit character sets,
:mod:`ipaddress`, :func:`posixpath.normpath`) and shares no code or regex with
the runtime. For every raw action the two must agree on refusing it (a bad
argument) or not, and when neither refuses, the reference's decision on the
runtime's output must equal its decision on its own output under every example
policy and a generated one: a normalisation bug that changes a decision (a
host made valid, a path resolved differently, a name let through) fails here.

The generators produce a valid action type most of the time, every protocol
(``ws`` and ``wss`` included), every filesystem operation, and the hostile
spellings of the parity work (whitespace around hosts, IPv6 that carries IPv4,
``%2e``, backslashes, control characters).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sekuire.runtime import InvalidActionError
from sekuire.runtime.normalize import normalize_action

from . import reference
from .hypothesis_profiles import PROPERTY_SETTINGS
from .security_support import EXAMPLE_NAMES, load_example
from .test_differential import generated_contents

# Pure Python on both sides: affordable at several hundred examples even in the fast profile.
ORACLE_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=max(PROPERTY_SETTINGS.max_examples, 400))

CONTENTS: list[dict[str, Any]] = [load_example(name).raw_content for name in EXAMPLE_NAMES] + generated_contents()[:2]

_controls = st.sampled_from(["\u0000", "\t", "\n", "\r", "\u001b", "\u007f", "\u0085", "\u009f"])
_spaces = st.sampled_from([" ", "\t", "\n", "\u00a0", "\u3000", "\u200b", "\x0b", "\x0c"])
_labels = st.sampled_from(["api", "openai", "com", "anthropic", "evil", "x", "a-b", "_s", "0x1f", "127", "xn--p1ai",
                           "arxiv", "org", "wikipedia", "upload", "export", "1", "Api", "EVIL"])
_names = st.builds(".".join, st.lists(_labels, min_size=1, max_size=4))
_carriers = st.sampled_from(["::", "::127.0.0.1", "::7f00:1", "::ffff:0:7f00:1", "::ffff:127.0.0.1", "64:ff9b::a9fe:a9fe",
                             "64:ff9b:1::1", "2002:7f00:1::", "2001::1", "::1", "fd00:ab::66", "fd00:ab:dead::1",
                             "2001:db8::53", "10.20.0.66", "10.20.99.1"])
_ipv6 = st.one_of(st.ip_addresses(v=6).map(str), _carriers,
                  st.ip_addresses(v=4).map(lambda a: str(ipaddress.IPv6Address(int(a) | (0x2002 << 112)))))


def _wrap(host: str, brackets: bool, port: str | None, dots: str, upper: bool) -> str:
    host = host.upper() if upper else host
    host = f"[{host}]" if brackets else host + dots
    return host + (f":{port}" if port is not None else "")


_ports = st.one_of(st.none(), st.sampled_from(["0", "443", "8080", "65535", "65536", "0443", "", "x"]))
_dots = st.sampled_from(["", ".", "..", ". "])
hosts = st.one_of(
    st.builds(_wrap, _names, st.just(False), _ports, _dots, st.booleans()),
    st.builds(_wrap, st.ip_addresses(v=4).map(str), st.booleans(), _ports, _dots, st.just(False)),
    st.builds(_wrap, _ipv6, st.booleans(), _ports, st.just(""), st.booleans()),
    st.builds(lambda a, s, b: a + s + b, st.one_of(_spaces, _controls, st.just("")), _names,
              st.one_of(_spaces, _controls, st.just(""))),
    st.builds(lambda a, c, b: a + c + b, _names, st.sampled_from(["@", "/", "\\", "#", "%2e", "..", ":", "[", "]", "*"]),
              _names),
    st.text(alphabet="ab1.:[]-_@/ \t%fF", max_size=14),
)
_segments = st.sampled_from(["workspace", "secrets", "tmp", "data", "papers", "embargoed", "a.txt", "k.md", "x.PDF",
                             "", ".", "..", "...", "a.", "a ", " a", "%2e%2e", "%2F", "%zz", "100%", "a\\b", "\\",
                             "\u2025", "\u0000", ".env", "notes"])
_bases = st.sampled_from(["/workspace", "/workspace/secrets", "/tmp", "/data/papers", "/data/papers/embargoed",
                          "/home/agent/notes", "/etc/ssl/certs", "", "/"])
_tails = st.sampled_from(["..", ".", "", "a.txt", "secrets", "embargoed", "private.md", "k.md", "x.pdf", "key.txt",
                          "ca-certificates.crt", "../..", "%2e%2e", "a."])
paths = st.one_of(
    st.builds(lambda base, tail: base + "/" + "/".join(tail), _bases, st.lists(_tails, min_size=1, max_size=4)),
    st.builds(lambda lead, segments: lead + "/".join(segments), st.sampled_from(["/", "//", "", "./", "\\"]),
              st.lists(_segments, max_size=6)),
    st.text(alphabet="/.a%2e\\ \u0000", max_size=16),
)
_tool_names = st.sampled_from(["web_search", "file_read", "file_delete", "shell", "github:create_issue", "*", "pdf_sign",
                               "calculator", "openai", "github:admin", "crossref", "exec_rm"])
names = st.one_of(
    _tool_names,
    st.builds(lambda n, c, front: c + n if front else n + c, _tool_names, st.one_of(_controls, _spaces), st.booleans()),
    st.text(max_size=8),
)
_model_names = st.sampled_from(["gpt-4o", "gpt-4o-mini", "o3-mini", "claude-3-opus", "gemini-1.0-pro", "llama3.1-70b",
                                "codestral", "my-model", "GPT-4O"])
models = st.one_of(_model_names, st.builds(lambda n, c: n + c, _model_names, _controls), st.text(max_size=6))
providers = st.one_of(st.none(), st.sampled_from(["openai", "OpenAI", "anthropic", "google", "azure", "", "openai\u0000",
                                                  "\u0085mistral"]), st.integers(0, 2))
protocols = st.sampled_from(["https", "http", "wss", "ws", "HTTPS", "WSS", "Ws", "ftp", "", " https", "https\u0000",
                             None, 443])
operations = st.one_of(st.sampled_from(list(reference.FILE_OPERATIONS)), st.sampled_from(["READ", "rm", "", None]))
amounts = st.one_of(st.integers(0, 10**6), st.sampled_from([2**53 - 1, 2**53, -1, 1.0, True, "1", None]))


def _action(kind: str, required: dict[str, st.SearchStrategy[Any]],
            optional: dict[str, st.SearchStrategy[Any]] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"type": st.just(kind), **required}, optional=optional or {})


valid_types = st.one_of(
    _action("tool", {"name": names}),
    _action("capability", {"name": names}),
    _action("api", {"name": names}),
    _action("model", {"name": models}, {"provider": providers}),
    _action("network", {"host": hosts, "protocol": protocols}),
    _action("network", {"host": hosts}),
    _action("filesystem", {"path": paths, "operation": operations}),
    _action("rate_limit", {"kind": st.sampled_from(["request", "token", "requests"])}, {"amount": amounts}),
)
odd = st.one_of(
    st.none(), st.integers(), st.text(max_size=4), st.just({}),
    st.fixed_dictionaries({"type": st.sampled_from(["Tool", "shell", "network ", ""]), "name": names}),
    # an unknown field, or a required one missing
    valid_types.map(lambda a: {**a, "allowed": True}),
    valid_types.map(lambda a: {"type": a["type"]}),
    _action("rate_limit", {"kind": st.just("request"), "usage": st.just({"minute": 0, "hour": 0})}),
)
# A valid type nine times in ten (one_of would pick the two branches equally often).
actions = st.integers(0, 9).flatmap(lambda draw: odd if draw == 0 else valid_types)


def _runtime(action: Any) -> dict[str, Any] | None:
    try:
        return normalize_action(action)
    except InvalidActionError:
        return None


def _decisions(action: dict[str, Any]) -> list[tuple[bool, list[str]]]:
    if action["type"] == "rate_limit":
        action = {**action, "usage": {"minute": 0, "hour": 0}}
    decisions = []
    for content in CONTENTS:
        decision = reference.decide(content, {"action": action})
        decisions.append((decision["allow"], [v["rule"] for v in decision["violations"]]))
    return decisions


def _agree(action: Any) -> None:
    runtime, oracle = _runtime(action), reference.normalize_action(action)
    assert (runtime is None) == (oracle is None), (action, runtime, oracle)
    if runtime is not None and oracle is not None:
        assert runtime["type"] == oracle["type"] and set(runtime) == set(oracle), (runtime, oracle)
        assert _decisions(runtime) == _decisions(oracle), (action, runtime, oracle)


@ORACLE_SETTINGS
@given(action=actions)
def test_the_runtime_normaliser_decides_like_the_independent_reference(action):
    _agree(action)


@ORACLE_SETTINGS
@given(host=hosts, protocol=protocols)
def test_hosts_and_protocols_normalise_like_the_reference(host, protocol):
    _agree({"type": "network", "host": host, "protocol": protocol})


@ORACLE_SETTINGS
@given(path=paths, operation=operations)
def test_paths_normalise_like_the_reference(path, operation):
    _agree({"type": "filesystem", "path": path, "operation": operation})


def test_the_generators_reach_every_type_and_protocol():
    """A property over actions without valid types, or without ws, would prove little (issue 15.5)."""
    seen_types: set[str] = set()
    seen_protocols: set[Any] = set()
    counts = {"valid": 0, "all": 0}

    @settings(PROPERTY_SETTINGS, max_examples=1000, derandomize=True, database=None)
    @given(action=actions)
    def collect(action: Any) -> None:
        counts["all"] += 1
        counts["valid"] += reference.normalize_action(action) is not None
        if isinstance(action, dict) and action.get("type") in reference.ACTION_TYPES:
            seen_types.add(action["type"])
            if action["type"] == "network":
                seen_protocols.add(action.get("protocol"))

    collect()
    assert seen_types == set(reference.ACTION_TYPES)
    assert {"https", "http", "wss", "ws"} <= seen_protocols
    # Most actions pass the runtime's argument checks, so most reach a decision.
    assert counts["valid"] > counts["all"] / 2, counts


@pytest.mark.parametrize(
    "action",
    [
        {"type": "network", "host": " api.openai.com"},
        {"type": "network", "host": "[::]:443"},
        {"type": "network", "host": "64:ff9b::a9fe:a9fe", "protocol": "WSS"},
        {"type": "network", "host": "API.OPENAI.COM.:443", "protocol": "ws"},
        {"type": "filesystem", "path": "/workspace/x/../%2e%2e/a.txt"},
        {"type": "filesystem", "path": "//workspace/./a.txt/"},
        {"type": "filesystem", "path": "/workspace\\..\\etc"},
        {"type": "tool", "name": "shell\u0085"},
        {"type": "model", "name": "gpt-4o", "provider": "openai\u007f"},
        {"type": "model", "name": "gpt-4o", "provider": None},
    ],
)
def test_regressions_of_the_parity_work(action):
    _agree(action)


# -- the limits, at their boundary (mutation testing: a limit off by one passed every property) --------------

@pytest.mark.parametrize("char", ["a", "\u00e9"])  # ASCII takes the fast paths, the rest the general checks
@pytest.mark.parametrize("field", ["name", "host", "path"])
def test_values_up_to_the_length_limit_pass_and_one_more_is_refused(field, char):
    MAX_VALUE_LENGTH = 4096  # the documented limit, not the module's constant (a mutant changes both alike)

    def action(length: int) -> dict[str, Any]:
        value = "/" + char * (length - 1) if field == "path" else char * length
        kind = {"name": "tool", "host": "network", "path": "filesystem"}[field]
        return {"type": kind, field: value}

    assert normalize_action(action(MAX_VALUE_LENGTH))[field]
    with pytest.raises(InvalidActionError, match=f"longer than {MAX_VALUE_LENGTH}"):
        normalize_action(action(MAX_VALUE_LENGTH + 1))


def test_paths_up_to_the_segment_limit_pass_and_one_more_is_refused():
    MAX_PATH_SEGMENTS = 256  # documented in docs/architecture.md

    for general in ("/\u00e9" * MAX_PATH_SEGMENTS, "/./a" * MAX_PATH_SEGMENTS):  # not the ASCII fast path
        assert normalize_action({"type": "filesystem", "path": general})["path"] == general.replace("/.", "")
    deepest = "/a" * MAX_PATH_SEGMENTS
    assert normalize_action({"type": "filesystem", "path": deepest})["path"] == deepest
    with pytest.raises(InvalidActionError, match=f"more than {MAX_PATH_SEGMENTS} segments"):
        normalize_action({"type": "filesystem", "path": deepest + "/a"})


@pytest.mark.parametrize(("action", "message"), [
    ({"type": "tool", "name": ""}, "name must not be empty"),
    ({"type": "tool", "name": "a\u0000"}, "name contains a control character"),
    ({"type": "tool", "name": 5}, "name must be a string, not int"),
    ({"type": "tool", "name": "\ud800"}, "name is not valid Unicode"),
    ({"type": "model", "name": "gpt-4o", "provider": ""}, "provider must not be empty"),
    ({"type": "network", "host": 5}, "host must be a string, not int"),
    ({"type": "network", "host": "\u00e9" * 4097}, "host is longer than 4096 characters"),
    ({"type": "filesystem", "path": "/\u00e9" * 257}, "path has more than 256 segments"),
])
def test_refusals_of_the_normaliser_word_for_word(action, message):
    with pytest.raises(InvalidActionError) as info:
        normalize_action(action)
    assert str(info.value) == message
