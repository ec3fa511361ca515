"""Lowering: verified policy content -> the normalised data document the Rego library reads.

Every list becomes a structure the Rego can answer with key lookups, so a
decision costs the same whether a list has ten entries or a hundred thousand:

- names (tools, capabilities, APIs, models)::

      {"exact": {"web_search": true}, "patterns": {"file_*": "^(?s:file_.*)$"},
       "globs": {"lengths": [5], "prefixes": {"file_": {"any": true}}}}

  ``exact`` is looked up by key. ``globs`` indexes the globs by their literal
  prefix (the text before the first ``*``): the Rego looks up the name's prefix
  of each length in ``lengths``, then within that group ``any`` (``prefix*``),
  ``suffixes`` (``prefix*suffix``: the suffix reversed, indexed by length the same
  way) or, for globs with more stars, ``regexes``. ``patterns`` (every glob as an
  anchored regular expression that OPA and regorus run identically) is read only
  by explanations.
- domains::

      {"any": false, "exact": {"api.openai.com": "name", "10.0.0.1": "ipv4"},
       "suffixes": {"anthropic.com": true}, "cidrs4": ["10.0.0.0/8"], "cidrs6": ["fd00::/8"],
       "cidr4_lengths": [8], "cidr4_nets": {"8": {"10": "10.0.0.0/8"}}}

  ``*.example.com`` is the suffix key ``example.com``: the Rego looks up each
  suffix of the host (one lookup per label). An IPv4 CIDR of prefix length L is
  the key ``address >> (32 - L)`` under ``cidr4_nets[L]``: one lookup per distinct
  length. IPv6 literals become ``/128`` networks because their spellings are too
  many to key on; IPv6 CIDRs are iterated. ``cidrs4`` is read only by explanations.
- paths::

      {"exact": {"/etc/hosts": true}, "prefixes": {"/workspace": true, "/": true}, "depths": [0, 1]}

  ``/dir/*`` is the prefix key ``/dir``: the Rego looks up the ancestor of the
  path at each depth (number of segments) in ``depths``.

``sections`` says which sections exist, so the Rego never reads a whole section
to learn that. Patterns are validated here; an illegal one raises
:class:`CompileError` whose pointer names the entry
(``/content/permissions/network/allowed_domains/3``). docs/policy-semantics.md
describes the whole layout and the semantic decisions.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from ..errors import CompileError
from .indexes import MODEL_PROVIDER_PREFIXES, cidr4_index, glob_index, glob_regex, model_provider_index, prefix_depths
from ..policy.model import (
    ApisSection,
    CapabilitiesSection,
    ComplianceSection,
    FilesystemSection,
    ModelsSection,
    NetworkSection,
    PolicyContent,
    RateLimitsSection,
    ToolsSection,
)

__all__ = [
    "FILE_OPERATIONS",
    "MAX_SAFE_INTEGER",
    "MODEL_PROVIDER_PREFIXES",
    "glob_regex",
    "lower_content",
]

#: Operations a filesystem action may name (``allowed_operations`` picks from these).
FILE_OPERATIONS = ("append", "create", "delete", "execute", "list", "read", "write")

#: Limits and counters stay exact in every JSON parser (IEEE doubles hold integers up to 2**53).
MAX_SAFE_INTEGER = 2**53 - 1

_CONTENT = "/content"
_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_IPV4 = re.compile(r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}")
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_EXTENSION = re.compile(r"\.?([^./\s\x00-\x1f\x7f]+)")


def _error(message: str, pointer: str) -> CompileError:
    return CompileError(message, pointer=pointer)


# \s is str.isspace() (Unicode whitespace); one regex search instead of a Python loop per character.
_CONTROL_OR_SPACE = re.compile(r"[\s\x00-\x1f\x7f]")


def _has_control_or_space(value: str) -> bool:
    return _CONTROL_OR_SPACE.search(value) is not None


def _ascii_lower(value: str) -> str:
    # Only ASCII folds: Go's and Rust's Unicode lower-casing differ, the Rego folds A-Z only.
    return value.translate(_ASCII_FOLD)


_ASCII_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


# -- names -------------------------------------------------------------------------------------------


def _name_matcher(lists: Iterable[tuple[tuple[str, ...], str]]) -> dict[str, Any]:
    exact: dict[str, bool] = {}
    patterns: dict[str, str] = {}
    for entries, pointer in lists:
        for index, name in enumerate(entries):
            where = f"{pointer}/{index}"
            if not name:
                raise _error("empty name", where)
            if _has_control_or_space(name):
                raise _error(f"name {name!r} contains whitespace or a control character", where)
            if "*" in name:
                patterns[name] = glob_regex(name)
            else:
                exact[name] = True
    return {"exact": exact, "patterns": patterns, "globs": glob_index(patterns)}


def _lower_tools(capabilities: CapabilitiesSection | None, tools: ToolsSection | None) -> dict[str, Any] | None:
    if capabilities is None and tools is None:
        return None
    allowed: list[tuple[tuple[str, ...], str]] = []
    blocked: list[tuple[tuple[str, ...], str]] = []
    if capabilities is not None:
        allowed.append((capabilities.allowed_tools, f"{_CONTENT}/agent/capabilities/allowed_tools"))
        blocked.append((capabilities.denied_tools, f"{_CONTENT}/agent/capabilities/denied_tools"))
    if tools is not None:
        allowed.append((tools.allowed_tools, f"{_CONTENT}/permissions/tools/allowed_tools"))
        blocked.append((tools.blocked_tools, f"{_CONTENT}/permissions/tools/blocked_tools"))
    return {"allowed": _name_matcher(allowed), "blocked": _name_matcher(blocked)}


def _lower_apis(apis: ApisSection | None) -> dict[str, Any] | None:
    if apis is None:
        return None
    base = f"{_CONTENT}/permissions/apis"
    return {
        "allowed": _name_matcher([(apis.allowed_apis, f"{base}/allowed_apis")]),
        "blocked": _name_matcher([(apis.blocked_apis, f"{base}/blocked_apis")]),
    }


def _lower_models(models: ModelsSection | None) -> dict[str, Any] | None:
    if models is None:
        return None
    base = f"{_CONTENT}/agent/models"
    providers: dict[str, bool] = {}
    for index, provider in enumerate(models.allowed_providers):
        where = f"{base}/allowed_providers/{index}"
        if not provider or _has_control_or_space(provider):
            raise _error(f"provider {provider!r} is empty or contains whitespace or a control character", where)
        if "*" in provider:
            raise _error(f"provider {provider!r}: providers are exact names, '*' is not allowed", where)
        providers[_ascii_lower(provider)] = True
    return {
        "providers": providers,
        # An empty allowed_models allows any model of an allowed provider (DESIGN.md section 4).
        "any_model": not models.allowed_models,
        "allowed": _name_matcher([(models.allowed_models, f"{base}/allowed_models")]),
        "denied": _name_matcher([(models.denied_models, f"{base}/denied_models")]),
    }


# -- domains -----------------------------------------------------------------------------------------


def _host_name(value: str) -> bool:
    """A DNS name (lower-case, no trailing dot) that no resolver would read as an IPv4 number."""
    labels = value.split(".")
    return (
        len(value) <= 253
        and all(_LABEL.fullmatch(label) for label in labels)
        and not _NUMERIC_LABEL.fullmatch(labels[-1])
    )


def _domain_matcher(entries: tuple[str, ...], pointer: str) -> dict[str, Any]:
    matcher: dict[str, Any] = {"any": False, "exact": {}, "suffixes": {}, "cidrs4": set(), "cidrs6": set()}
    # "name" or "ipv4" per exact entry: the Rego's fast allow takes only names.
    for index, raw in enumerate(entries):
        where = f"{pointer}/{index}"
        value = _ascii_lower(raw)
        if value == "*":
            matcher["any"] = True
            continue
        if "/" in value:
            try:
                network = ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise _error(f"invalid CIDR {raw!r}", where) from None
            _add_network(matcher, network, raw, where)
            continue
        literal = value[1:-1] if value.startswith("[") and value.endswith("]") else value
        if ":" in literal:
            try:
                address = ipaddress.IPv6Address(literal)
            except ValueError:
                raise _error(f"invalid domain {raw!r}: a port or a malformed IPv6 address", where) from None
            _add_network(matcher, ipaddress.ip_network(address), raw, where)
            continue
        if value.endswith("."):
            value = value[:-1]
        if _IPV4.fullmatch(value):
            matcher["exact"][value] = "ipv4"
        elif value.startswith("*."):
            suffix = value[2:]
            if not _host_name(suffix):
                raise _error(f"invalid domain pattern {raw!r}: '*.' must be followed by a host name", where)
            matcher["suffixes"][suffix] = True
        elif "*" in value:
            raise _error(f"invalid domain pattern {raw!r}: '*' is allowed only alone or as a leading '*.'", where)
        elif _host_name(value):
            matcher["exact"][value] = "name"
        else:
            raise _error(f"invalid domain {raw!r}: not a host name, IPv4/IPv6 address or CIDR", where)
    matcher["cidrs4"] = sorted(matcher["cidrs4"])
    matcher["cidrs6"] = sorted(matcher["cidrs6"])
    return {**matcher, **cidr4_index(matcher["cidrs4"])}


def _add_network(matcher: dict[str, Any], network: ipaddress.IPv4Network | ipaddress.IPv6Network, raw: str,
                 where: str) -> None:
    if network.version == 4:
        matcher["cidrs4"].add(str(network))
    elif network.subnet_of(_MAPPED):  # type: ignore[arg-type]
        # OPA and regorus disagree on IPv4-mapped addresses; hosts in that form are invalid anyway.
        raise _error(f"IPv4-mapped address {raw!r}: write the IPv4 form", where)
    else:
        matcher["cidrs6"].add(str(network))


def _lower_network(network: NetworkSection | None) -> dict[str, Any] | None:
    if network is None:
        return None
    base = f"{_CONTENT}/permissions/network"
    return {
        "enabled": network.enabled,
        "require_tls": network.require_tls,
        "allowed": _domain_matcher(network.allowed_domains, f"{base}/allowed_domains"),
        "blocked": _domain_matcher(network.blocked_domains, f"{base}/blocked_domains"),
    }


# -- paths -------------------------------------------------------------------------------------------


def _normal_path(path: str) -> bool:
    if path == "/":
        return True
    segments = path.split("/")
    return segments[0] == "" and all(seg not in ("", ".", "..") and "\0" not in seg for seg in segments[1:])


def _path_matcher(entries: tuple[str, ...], pointer: str) -> dict[str, Any]:
    matcher: dict[str, Any] = {"exact": {}, "prefixes": {}}
    for index, raw in enumerate(entries):
        where = f"{pointer}/{index}"
        if not raw.startswith("/"):
            raise _error(f"path pattern {raw!r} is not absolute", where)
        directory, star = (raw[:-2] or "/", True) if raw.endswith("/*") else (raw, False)
        if "*" in directory:
            raise _error(f"path pattern {raw!r}: '*' is allowed only as a final '/*'", where)
        if not _normal_path(directory):
            raise _error(f"path pattern {raw!r} is not normalised (empty, '.' or '..' segment, or NUL)", where)
        matcher["prefixes" if star else "exact"][directory] = True
    return {**matcher, "depths": prefix_depths(matcher["prefixes"])}


def _lower_filesystem(fs: FilesystemSection | None) -> dict[str, Any] | None:
    if fs is None:
        return None
    base = f"{_CONTENT}/permissions/filesystem"
    extensions: dict[str, bool] = {}
    for index, raw in enumerate(fs.allowed_extensions):
        match = _EXTENSION.fullmatch(raw)
        if match is None:
            raise _error(
                f"extension {raw!r} is not a single suffix like '.txt' (only the final suffix is compared)",
                f"{base}/allowed_extensions/{index}",
            )
        extensions["." + _ascii_lower(match.group(1))] = True
    # No allowed_operations: every operation.
    operations = dict.fromkeys(FILE_OPERATIONS, True) if fs.allowed_operations is None else {}
    if fs.allowed_operations is not None:
        for index, operation in enumerate(fs.allowed_operations):
            if operation not in FILE_OPERATIONS:
                raise _error(
                    f"unknown operation {operation!r}; expected one of {', '.join(FILE_OPERATIONS)}",
                    f"{base}/allowed_operations/{index}",
                )
            operations[operation] = True
    return {
        "enabled": fs.enabled,
        "allowed": _path_matcher(fs.allowed_paths, f"{base}/allowed_paths"),
        "blocked": _path_matcher(fs.blocked_paths, f"{base}/blocked_paths"),
        # An empty allowed_extensions list restricts nothing (it does not forbid every file).
        "any_extension": not extensions,
        "extensions": extensions,
        "operations": operations,
    }


# -- rate limits and compliance -------------------------------------------------------------------------


def _lower_rate_limits(limits: RateLimitsSection | None) -> dict[str, Any] | None:
    if limits is None:
        return None
    lowered: dict[str, dict[str, int]] = {}
    for kind, section in (("request", limits.requests), ("token", limits.tokens)):
        windows: dict[str, int] = {}
        plural = "requests" if kind == "request" else "tokens"
        for window in ("minute", "hour"):
            value = getattr(section, f"max_per_{window}") if section is not None else None
            if value is None:
                continue
            if value > MAX_SAFE_INTEGER:
                raise _error(f"limit {value} is larger than {MAX_SAFE_INTEGER}",
                             f"{_CONTENT}/rate_limits/{plural}/max_per_{window}")
            windows[window] = value
        lowered[kind] = windows
    return lowered


def _lower_compliance(compliance: ComplianceSection | None) -> dict[str, Any] | None:
    if compliance is None:
        return None
    return {
        "require_audit_logging": compliance.require_audit_logging,
        "frameworks": list(compliance.frameworks),
        "data_residency": compliance.data_residency,
    }


def lower_content(content: PolicyContent) -> dict[str, Any]:
    """Return the data document (without ``meta``) for ``data.sekuire.workspaces.<ws>.policy``.

    A missing section is ``None`` and ``sections[name]`` is false (the Rego denies
    with ``<domain>.missing``).
    """
    agent = content.agent
    permissions = content.permissions
    sections = {
        "tools": _lower_tools(agent.capabilities if agent else None, permissions.tools if permissions else None),
        "network": _lower_network(permissions.network if permissions else None),
        "filesystem": _lower_filesystem(permissions.filesystem if permissions else None),
        "apis": _lower_apis(permissions.apis if permissions else None),
        "models": _lower_models(agent.models if agent else None),
        "rate_limits": _lower_rate_limits(content.rate_limits),
        "compliance": _lower_compliance(content.compliance),
    }
    return {
        # The Rego tests presence here: reading a whole section costs OPA O(section size) per query.
        "sections": {name: section is not None for name, section in sections.items()},
        **sections,
        "model_prefixes": model_provider_index(),
    }
