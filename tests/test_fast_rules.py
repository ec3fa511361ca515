"""The fast allows and the indexed layouts (issue 14, items 4 and 5) decide exactly as the full rules.

- A corpus built to hit the fast paths and their edges (names listed exactly and
  matched by globs of every shape, unicode and astral characters included; IPv4
  hosts against CIDRs of many prefix lengths; paths at every depth; providers
  inferred by prefix) is decided by the reference, the real OPA and regorus (its
  interpreter and its VM), under policies with many globs, CIDRs and prefixes:
  the differential test's machinery, aimed at the new layout.
- Property: for random policies and actions drawn from their own entries (what
  the fast paths take) and spelt otherwise, the ``decision`` entry point (fast
  allow, else the full rules) and the ``explain`` entry point (always the full
  rules) give the same allow and violations, in regorus' VM and interpreter.
"""

from __future__ import annotations

import ipaddress
import json
import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sekuire.compiler.rego.compile import compile_policy
from sekuire.compiler.rego.lowering import MODEL_PROVIDER_PREFIXES
from sekuire.runtime import _regorus

from . import test_differential as differential
from .hypothesis_profiles import PROPERTY_SETTINGS
from .security_support import unsigned_policy
from .test_properties import valid_content

GLOB_ALPHABET = "ab_.:-é😀"


def _glob(rng: random.Random) -> str:
    """A glob of literal parts (1-3 characters) and single stars, in every shape: p*, p*s, *s, p*m*s, *m*."""
    def part() -> str:
        return "".join(rng.choice(GLOB_ALPHABET) for _ in range(rng.randint(1, 3)))

    shape = rng.choice(["p*", "p*", "p*s", "p*s", "*s", "p*m*s", "*m*"])
    return shape.replace("p", part()).replace("m", part()).replace("s", part())


def _name_near(rng: random.Random, entry: str) -> str:
    """A name built from an entry: the entry, a glob filled in, or one character off."""
    filled = "".join(rng.choice(["", "x", "é", "😀", "ab"]) if ch == "*" else ch for ch in entry)
    choice = rng.randrange(5)
    if choice == 0:
        return filled
    if choice == 1:
        return filled + rng.choice(GLOB_ALPHABET)
    if choice == 2:
        return rng.choice(GLOB_ALPHABET) + filled
    if choice == 3 and filled:
        return filled[:-1]
    return filled.upper()


def _cidrs(rng: random.Random, count: int) -> list[str]:
    result = set()
    while len(result) < count:
        length = rng.choice([0, 7, 8, 16, 20, 24, 27, 31, 32]) if rng.random() < 0.3 else rng.choice([16, 24, 28])
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        result.add(str(ipaddress.IPv4Network(f"{address}/{length}", strict=False)))
    return sorted(result)


def _host_near(rng: random.Random, cidr: str) -> str:
    network = ipaddress.IPv4Network(cidr)
    inside = int(network.network_address) + rng.randrange(network.num_addresses)
    edge = rng.choice([int(network.network_address) - 1, int(network.broadcast_address) + 1, inside, inside])
    return str(ipaddress.IPv4Address(edge % 2**32))


def _paths(rng: random.Random, count: int) -> list[str]:
    segments = ["a", "b", "src", "é", "😀", "x.y", "..z", "deep"]
    return sorted({"/" + "/".join(rng.choice(segments) for _ in range(rng.randint(1, 4))) + rng.choice(["/*", ""])
                   for _ in range(count)})


def _content(rng: random.Random, size: int, *, globs: bool) -> dict[str, Any]:
    """Lists of ``size`` entries; without ``globs``, names are exact only (the fast allows' first rules). Some
    names are both allowed and blocked, so a fast allow that forgot the blocked list would show."""
    patterns = sorted({_glob(rng) for _ in range(size)}) if globs else []
    words = sorted({"".join(rng.choice("abé_😀") for _ in range(rng.randint(1, 5))) for _ in range(size)})
    return {
        "agent": {
            "capabilities": {"allowed_tools": [*patterns[::2], *words[::2]],
                             "denied_tools": [*patterns[1::7], *words[::6], *words[1::5]]},
            "models": {"allowed_providers": ["openai", "meta", "mistral"],
                       "allowed_models": [*patterns[1::3], *words[::3], "gpt-4o"],
                       "denied_models": [*patterns[2::9], *words[::9]]},
        },
        "permissions": {
            "network": {"require_tls": rng.random() < 0.7, "allowed_domains": [*_cidrs(rng, size), "a.example.com",
                                                                                "*.b.example.com"],
                        "blocked_domains": _cidrs(rng, size // 4)},
            "filesystem": {"allowed_paths": _paths(rng, size), "blocked_paths": _paths(rng, size // 4),
                           "allowed_extensions": [".txt", ".y", ".Z"]},
            "apis": {"allowed_apis": [*patterns[::3], *words[::2]], "blocked_apis": [*patterns[1::11], *words[::8]]},
        },
    }


def _actions(rng: random.Random, content: dict[str, Any]) -> list[dict[str, Any]]:
    agent, permissions = content["agent"], content["permissions"]
    names = [*agent["capabilities"]["allowed_tools"], *agent["capabilities"]["denied_tools"]]
    actions: list[dict[str, Any]] = []
    for entry in names:
        actions.append({"type": "tool", "name": entry.replace("*", "")})
        for _ in range(2):
            actions.append({"type": rng.choice(["tool", "capability"]), "name": _name_near(rng, entry)})
    for entry in [*permissions["apis"]["allowed_apis"], *permissions["apis"]["blocked_apis"]]:
        actions.append({"type": "api", "name": _name_near(rng, entry)})
    models = [*agent["models"]["allowed_models"], *MODEL_PROVIDER_PREFIXES]
    for entry in models:
        action = {"type": "model", "name": _name_near(rng, entry)}
        if rng.random() < 0.2:
            action["provider"] = rng.choice(["openai", "OpenAI", "meta", "azure", "", None])
        actions.append(action)
    network = permissions["network"]
    for cidr in [*network["allowed_domains"][:-2], *network["blocked_domains"]]:
        for _ in range(2):
            host = _host_near(rng, cidr)
            actions.append({"type": "network", "host": rng.choice([host, host, host + ":443", host + "."]),
                            "protocol": rng.choice(["https", "https", "http", "wss", "HTTPS"])})
    for host in ["a.example.com", "x.b.example.com", "b.example.com", "A.example.com", "a.example.com."]:
        actions.append({"type": "network", "host": host, "protocol": "https"})
    filesystem = permissions["filesystem"]
    for entry in [*filesystem["allowed_paths"], *filesystem["blocked_paths"]]:
        base = entry.removesuffix("/*")
        for tail in rng.sample(["", "/f.txt", "/f.TXT", "/d/f.y", "/.txt", "/f.z", "/g.Z", "/./f.txt", "/f.txt/"], 4):
            actions.append({"type": "filesystem", "path": (base + tail) or "/",
                            "operation": rng.choice(["read", "read", "list", "write"])})
    return actions


def _corpus() -> tuple[list[tuple[Any, dict[str, Any]]], list[Any], list[Any]]:
    rng = random.Random(20261203)
    compiled, actions, manifests = [], [], []
    for index, (size, globs) in enumerate(((30, True), (30, False), (150, True))):
        content = _content(rng, size, globs=globs)
        policy = unsigned_policy(content, f"ws_fast_{index}")
        compiled.append((compile_policy(policy), policy.raw_content))
        actions += _actions(rng, content)
        tools = [entry["name"] for entry in actions[-60:] if entry.get("type") == "tool"]
        manifests.append({"agent": {"llm": {"provider": "openai", "model": "gpt-4o"}}, "tools": tools,
                          "capabilities": {"provides": []}})
    return compiled, actions, manifests


def test_indexed_layouts_and_fast_allows_agree_with_the_reference_and_opa(opa_bin, tmp_path) -> None:
    compiled, actions, manifests = _corpus()
    assert len(actions) > 1000
    outcomes = differential._agree(opa_bin, tmp_path, compiled, actions, manifests)
    assert outcomes[True] > 300 and outcomes[False] > 300


# -- decision == explain, for random policies and actions near their entries -------------------------------------


def _entries(content: dict[str, Any]) -> list[str]:
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            found.extend(item for item in value if isinstance(item, str))

    walk(content)
    return found


@st.composite
def _near_actions(draw: st.DrawFn, content: dict[str, Any]) -> list[dict[str, Any]]:
    entries = _entries(content) or ["web_search"]
    actions = []
    for _ in range(draw(st.integers(1, 20))):
        entry = draw(st.sampled_from(entries))
        spelt = draw(st.sampled_from([entry, entry.upper(), entry.replace("*", "x"), entry.replace("*", ""),
                                      entry.removesuffix("/*") + "/f.txt", entry.strip("*.") or entry, entry + "."]))
        kind = draw(st.sampled_from(["tool", "capability", "api", "model", "network", "filesystem"]))
        field = {"network": "host", "filesystem": "path"}.get(kind, "name")
        action: dict[str, Any] = {"type": kind, field: spelt}
        if kind == "network":
            action["protocol"] = draw(st.sampled_from(["https", "http", "wss", None]))
        if kind == "filesystem":
            action["operation"] = draw(st.sampled_from(["read", "list", "write"]))
        actions.append(action)
    return actions


@PROPERTY_SETTINGS
@given(data=st.data(), content=valid_content)
def test_fast_allows_decide_as_the_full_rules(data, content) -> None:
    compiled = compile_policy(unsigned_policy(content))
    engine = _regorus.Policy(list(compiled.modules.items()), json.dumps(compiled.data))
    decision, explain = (f"data.{compiled.package}.{entry}" for entry in ("decision", "explain"))
    for action in data.draw(_near_actions(content)):
        document = {"action": action}
        fast = engine.evaluate(decision, document)
        full = engine.evaluate(explain, document)
        assert fast == engine.interpret(decision, document), action
        assert fast["allow"] == full["allow"], action
        assert fast["violations"] == [{"rule": v["rule"], "message": v["message"]} for v in full["violations"]], action
