"""The indexes the Rego looks list entries up by, so a decision never scans a list (issue 14, item 5).

- globs by literal prefix (the text before the first ``*``), then by shape:
  ``prefix*`` (``any``), ``prefix*suffix`` (the suffixes reversed, by length),
  more stars (``regexes``, tried one by one within their prefix);
- IPv4 CIDRs by prefix length: ``cidr4_nets[L][address >> (32 - L)]``;
- path prefixes by depth (number of segments);
- the model-provider prefix table grouped by the names' first characters.

Lengths are in code points, as Rego's ``substring`` and ``indexof_n`` count in both
engines (regorus' ``count`` of a string counts UTF-16 units, so the Rego never
counts a name). :mod:`.lowering` puts these beside the lists they index.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

__all__ = [
    "MODEL_KEY_LENGTH",
    "MODEL_PROVIDER_PREFIXES",
    "cidr4_index",
    "glob_index",
    "glob_regex",
    "model_provider_index",
    "prefix_depths",
    "prefix_index",
]

_REGEX_META = frozenset("\\.+*?()|[]{}^$")

#: Model-name prefix -> provider, for a model action without ``provider``. A prefix
#: ending in ``-`` is a plain prefix; any other (a model family such as ``o1`` or
#: ``llama``) matches the name itself or the name followed by ``-``, ``_``, ``.``,
#: ``:`` or a digit, so ``o1-mini`` and ``llama3.1`` match while ``o1x`` does not.
MODEL_PROVIDER_PREFIXES: dict[str, str] = {
    "chatgpt-": "openai",
    "claude-": "anthropic",
    "codestral": "mistral",
    "command-": "cohere",
    "deepseek-": "deepseek",
    "gemini-": "google",
    "gpt-": "openai",
    "grok-": "xai",
    "llama": "meta",
    "mistral-": "mistral",
    "mixtral-": "mistral",
    "o1": "openai",
    "o3": "openai",
    "o4": "openai",
}

#: Model-name prefixes are grouped by this many leading characters (every prefix has at least as many).
MODEL_KEY_LENGTH = 2


def _regex_escape(text: str) -> str:
    # Escape only the metacharacters RE2 and Rust's regex both accept escaped (re.escape escapes more).
    return "".join("\\" + ch if ch in _REGEX_META else ch for ch in text)


def glob_regex(pattern: str) -> str:
    """``file_*`` -> ``^(?s:file_.*)$``: ``*`` is any run of characters, everything else literal."""
    return "^(?s:" + ".*".join(_regex_escape(part) for part in pattern.split("*")) + ")$"


def model_provider_index() -> dict[str, Any]:
    """The prefix table grouped by the first :data:`MODEL_KEY_LENGTH` characters of each prefix:
    ``{"key_length": 2, "groups": {"gp": [{"prefix": "gpt-", "provider": "openai", "plain": true}], ...}}``.

    ``plain`` prefixes (ending in ``-``) match any name they start; the others (a model family, with its
    ``length`` and ``ends``) only the name itself or the name followed by ``-``, ``_``, ``.``, ``:`` or a digit.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for prefix, provider in sorted(MODEL_PROVIDER_PREFIXES.items()):
        row: dict[str, Any] = {"prefix": prefix, "provider": provider, "plain": prefix.endswith("-")}
        if not row["plain"]:
            # What may follow a model family's name ("" for the name itself), and where it starts.
            row["length"] = len(prefix)
            row["ends"] = dict.fromkeys(["", "-", "_", ".", ":", *"0123456789"], True)
        groups.setdefault(prefix[:MODEL_KEY_LENGTH], []).append(row)
    return {"key_length": MODEL_KEY_LENGTH, "groups": groups}


def prefix_index(keys: Iterable[str], value: Any = True) -> dict[str, Any]:
    """``{"lengths": [...], "prefixes": {key: value}}``: the distinct lengths (in code points) of the keys."""
    keyed = dict.fromkeys(sorted(keys), value)
    return {"lengths": sorted({len(key) for key in keyed}), "prefixes": keyed}


def glob_index(patterns: dict[str, str]) -> dict[str, Any]:
    """Globs grouped by their literal prefix, each group split by the shape of the rest (see the module docstring)."""
    groups: dict[str, dict[str, Any]] = {}
    for glob in sorted(patterns):
        prefix, rest = glob.split("*", 1)
        group = groups.setdefault(prefix, {"any": False, "suffixes": set(), "regexes": {}})
        if rest == "":
            group["any"] = True
        elif "*" not in rest:
            group["suffixes"].add(rest[::-1])
        else:
            group["regexes"][glob] = patterns[glob]
    for group in groups.values():
        group["suffixes"] = prefix_index(group["suffixes"])
    return {"lengths": sorted({len(prefix) for prefix in groups}), "prefixes": groups}


def cidr4_index(cidrs4: Iterable[str]) -> dict[str, Any]:
    """``{"cidr4_lengths": [L, ...], "cidr4_nets": {"L": {str(address >> (32 - L)): cidr}}}`` of IPv4 CIDRs."""
    nets: dict[str, dict[str, str]] = {}
    for cidr in cidrs4:
        network = ipaddress.IPv4Network(cidr)
        key = str(int(network.network_address) >> (32 - network.prefixlen))
        nets.setdefault(str(network.prefixlen), {})[key] = cidr
    return {"cidr4_lengths": sorted(int(length) for length in nets), "cidr4_nets": nets}


def prefix_depths(prefixes: Iterable[str]) -> list[int]:
    """The depths (segments: "/" 0, "/workspace" 1) of the path prefixes: the Rego looks up only those."""
    return sorted({0 if prefix == "/" else prefix.count("/") for prefix in prefixes})
