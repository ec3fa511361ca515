"""A small reference implementation of DESIGN.md section 4, for differential and property tests.

It reads the *raw* policy content (the ``content`` object of a policy.json), not
the lowered data, and is written for obviousness rather than speed: lists are
scanned, wildcards become ``re`` patterns, IP addresses go through
:mod:`ipaddress`. The semantic decisions it encodes are the ones written down in
docs/policy-semantics.md; the Rego library must agree with it on every action.

    decide(content, input_document, meta) -> {"allow", "violations", "policy"}
    check_manifest(content, manifest, meta) -> {"allow", "violations", "warnings", "policy"}
    normalize_action(action) -> the action the runtime should send, or None when it must refuse it

It imports nothing from the project and copies none of its regular expressions
or tables: hosts are read with explicit character sets and :mod:`ipaddress`,
paths with :func:`posixpath.normpath`, so it is an independent oracle for the
runtime's normaliser (runtime/normalize.py) as well as for the Rego.
"""

from __future__ import annotations

import ipaddress
import posixpath
import string
from pathlib import Path
from typing import Any

__all__ = [
    "ACTION_TYPES",
    "FILE_OPERATIONS",
    "MAX_SAFE_INTEGER",
    "check_manifest",
    "decide",
    "normalize_action",
    "normalize_host",
    "normalize_path",
    "parse_host",
]

ACTION_TYPES = ("api", "capability", "filesystem", "model", "network", "rate_limit", "tool")
FILE_OPERATIONS = ("append", "create", "delete", "execute", "list", "read", "write")
MAX_SAFE_INTEGER = 2**53 - 1

_SEMANTICS = Path(__file__).resolve().parent.parent / "docs" / "policy-semantics.md"


def _documented_prefixes(text: str) -> dict[str, str]:
    """The model-name prefix table of docs/policy-semantics.md (two prefix/provider pairs per row), read from the page.

    The reference takes the table from the documentation, not from the compiler's
    copy, so a prefix the compiler ships but the page does not name (or the other
    way round) makes the differential test fail.
    """
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.replace(" ", "") == "|prefix|provider||prefix|provider|")
    table: dict[str, str] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        for prefixes, provider in ((cells[0], cells[1]), (cells[3], cells[4])):
            for prefix in prefixes.split(","):
                table[prefix.strip().strip("`")] = provider
    return table


# Model-name prefix -> provider. A prefix ending in "-" is plain; a family name must be
# followed by the end of the name, "-", "_", ".", ":" or a digit.
PROVIDER_PREFIXES = _documented_prefixes(_SEMANTICS.read_text(encoding="utf-8"))

_TYPE_LIST = ", ".join(ACTION_TYPES)
_OPERATION_LIST = ", ".join(FILE_OPERATIONS)

# The grammar below is written from docs/policy-semantics.md with explicit character sets,
# str methods and :mod:`ipaddress`; it shares no code, regex or table with the runtime or the Rego.
_DIGITS = frozenset(string.digits)
_HEX = frozenset(string.hexdigits)  # both cases
_LOWER_HEX = frozenset("0123456789abcdef")
_HOST_CHARACTERS = frozenset(string.ascii_letters + string.digits + "._-:[]")
_LABEL_CHARACTERS = frozenset(string.ascii_lowercase + string.digits + "_-")
_IPV6_CHARACTERS = _LOWER_HEX | {":", "."}


def _ascii_lower(text: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def _q(value: str) -> str:
    return f"'{value}'"


def _section(content: dict[str, Any], *path: str) -> dict[str, Any] | None:
    node: Any = content
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _non_empty_string(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _is_control(char: str) -> bool:
    """C0 controls, DEL and C1 controls (U+0000-U+001F, U+007F-U+009F)."""
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0


def _has_control(value: Any) -> bool:
    return isinstance(value, str) and any(_is_control(c) for c in value)


def _safe_count(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return 0 <= value <= MAX_SAFE_INTEGER and float(value).is_integer()


# -- names ---------------------------------------------------------------------------------------------


def _name_matches(pattern: str, name: str) -> bool:
    """``*`` is any run of characters: match the literal pieces left to right, the first and last anchored."""
    if "*" not in pattern:
        return pattern == name
    pieces = pattern.split("*")
    first, last = pieces[0], pieces[-1]
    if len(name) < len(first) + len(last) or not name.startswith(first) or not name.endswith(last):
        return False
    position, stop = len(first), len(name) - len(last)
    for piece in pieces[1:-1]:
        found = name.find(piece, position, stop)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def _any_name(patterns: list[str], name: str) -> bool:
    return any(_name_matches(p, name) for p in patterns)


# -- hosts ---------------------------------------------------------------------------------------------


def _port(text: str) -> bool:
    """0-65535 in decimal without leading zeros."""
    if not text or not set(text) <= _DIGITS:
        return False
    return (text == "0" or not text.startswith("0")) and int(text) <= 65535


def _dotted_quad(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(
        part and set(part) <= _DIGITS and (part == "0" or not part.startswith("0")) and int(part) <= 255
        for part in parts
    )


def _carries_ipv4(address: ipaddress.IPv6Address) -> bool:
    """The unspecified address, or an address that embeds or aliases an IPv4 address."""
    value = int(address)
    high96 = value >> 32
    return (
        (high96 == 0 and value != 1)  # :: and IPv4-compatible ::a.b.c.d (the loopback ::1 excepted)
        or high96 == 0xFFFF  # IPv4-mapped ::ffff:a.b.c.d
        or high96 == 0xFFFF_0000  # IPv4-translated ::ffff:0:a.b.c.d
        or high96 == 0x0064_FF9B_0000_0000_0000_0000  # NAT64 64:ff9b::/96
        or value >> 80 == 0x0064_FF9B_0001  # local-use NAT64 64:ff9b:1::/48
        or address.sixtofour is not None  # 2002::/16
        or address.teredo is not None  # 2001::/32
    )


def _ipv6(text: str) -> tuple[str, str] | None:
    text = _ascii_lower(text)
    if not text or not set(text) <= _IPV6_CHARACTERS:
        return None
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    return None if _carries_ipv4(address) else ("ipv6", text)


def _dns_name(name: str) -> bool:
    labels = name.split(".")
    if len(name) > 253 or not all(0 < len(label) <= 63 and set(label) <= _LABEL_CHARACTERS for label in labels):
        return False
    last = labels[-1]
    numeric = set(last) <= _DIGITS or (last.startswith("0x") and set(last[2:]) <= _LOWER_HEX)
    return not numeric


def parse_host(raw: str) -> tuple[str, str] | None:
    """(kind, normalised host) with kind "name", "ipv4" or "ipv6"; None for network.invalid_host."""
    if not raw or not set(raw) <= _HOST_CHARACTERS:
        return None
    if raw.startswith("["):
        inside, close, rest = raw[1:].partition("]")
        if not close or (rest and not (rest.startswith(":") and _port(rest[1:]))):
            return None
        return _ipv6(inside)
    if "[" in raw or "]" in raw:
        return None
    if raw.count(":") > 1:
        return _ipv6(raw)
    name, colon, port = raw.partition(":")
    if colon and not _port(port):
        return None
    name = _ascii_lower(name)
    if name.endswith("."):
        name = name[:-1]
    if _dotted_quad(name):
        return ("ipv4", name)
    return ("name", name) if _dns_name(name) else None


def _domain_matches(entry: str, kind: str, host: str, blocked: bool) -> bool:
    entry = _ascii_lower(entry)
    if entry == "*":
        return blocked or kind == "name"  # a blocked "*" is a kill switch for IP literals too
    if "/" in entry:
        if kind == "name":
            return False
        network = ipaddress.ip_network(entry, strict=False)
        address = ipaddress.ip_address(host)
        return network.version == address.version and address in network
    if ":" in entry:
        literal = entry[1:-1] if entry.startswith("[") and entry.endswith("]") else entry
        return kind == "ipv6" and ipaddress.IPv6Address(literal) == ipaddress.IPv6Address(host)
    if entry.endswith("."):
        entry = entry[:-1]
    if _dotted_quad(entry):
        return kind == "ipv4" and entry == host
    if kind != "name":
        return False
    if entry.startswith("*."):
        suffix = entry[2:]
        return host == suffix or host.endswith("." + suffix)
    return entry == host


def _any_domain(entries: list[str], kind: str, host: str, blocked: bool = False) -> bool:
    return any(_domain_matches(e, kind, host, blocked) for e in entries)


# -- paths ---------------------------------------------------------------------------------------------


def _has_escape(path: str) -> bool:
    """A ``%`` followed by two hex digits (what a URL decoder would turn into another character)."""
    return any(c == "%" and len(path[i + 1:i + 3]) == 2 and set(path[i + 1:i + 3]) <= _HEX
               for i, c in enumerate(path))


def _normal_path(path: str) -> bool:
    if path == "/":
        return True
    if not path.startswith("/") or "\0" in path or "\\" in path or _has_escape(path):
        return False
    segments = path[1:].split("/")
    return all(segment and segment[-1] not in ". " for segment in segments)


def _path_matches(pattern: str, path: str) -> bool:
    if pattern.endswith("/*"):
        directory = pattern[:-2]
        return path.startswith(directory + "/") and path != "/"
    return pattern == path


def _extension(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    i = name.rfind(".")
    return _ascii_lower(name[i:]) if 0 < i < len(name) - 1 else ""


# -- models --------------------------------------------------------------------------------------------


def _provider(name: Any, given: Any) -> str | None:
    if _non_empty_string(given):
        return _ascii_lower(given)
    if given is not None or not isinstance(name, str):
        return None
    folded = _ascii_lower(name)
    found = set()
    for prefix, provider in PROVIDER_PREFIXES.items():
        if folded.startswith(prefix):
            rest = folded[len(prefix):]
            if prefix.endswith("-") or rest == "" or rest[0] in "-_.:0123456789":
                found.add(provider)
    return found.pop() if len(found) == 1 else None


# -- decisions -----------------------------------------------------------------------------------------


def _tool(content: dict, action: dict, out: set) -> None:
    kind, name = action["type"], action.get("name")
    if not _non_empty_string(name):
        out.add(("input.invalid", f"{kind} action needs a non-empty string name"))
        return
    if _has_control(name):
        out.add(("input.invalid", f"{kind} action name holds a control character"))
        return
    capabilities = _section(content, "agent", "capabilities")
    tools = _section(content, "permissions", "tools")
    if capabilities is None and tools is None:
        out.add(("tool.missing", "the workspace policy has no tool permissions (agent.capabilities or permissions.tools)"))
        return
    capabilities, tools = capabilities or {}, tools or {}
    allowed = list(capabilities.get("allowed_tools", [])) + list(tools.get("allowed_tools", []))
    blocked = list(capabilities.get("denied_tools", [])) + list(tools.get("blocked_tools", []))
    if _any_name(blocked, name):
        out.add(("tool.blocked", f"{kind} {_q(name)} is blocked by the workspace policy"))
    if not _any_name(allowed, name):
        out.add(("tool.not_allowed", f"{kind} {_q(name)} is not in the allowed tools"))


def _network(content: dict, action: dict, out: set) -> None:
    raw, protocol = action.get("host"), action.get("protocol")
    valid = True
    if not isinstance(raw, str):
        out.add(("input.invalid", "network action needs a string host"))
        valid = False
    if protocol is not None and not isinstance(protocol, str):
        out.add(("input.invalid", "network action protocol must be a string"))
        valid = False
    if not valid:
        return
    section = _section(content, "permissions", "network")
    if section is None:
        out.add(("network.missing", "the workspace policy has no network permissions (permissions.network)"))
        return
    if section.get("enabled", True) is not True:
        out.add(("network.disabled", "network access is disabled by the workspace policy"))
        return
    protocol = _ascii_lower(protocol or "")
    if section.get("require_tls", True) and protocol not in ("https", "wss"):
        out.add(("network.tls_required",
                 f"protocol {_q(protocol)} is not allowed: the workspace policy requires TLS (https or wss)"))
    parsed = parse_host(raw)
    if parsed is None:
        out.add(("network.invalid_host", f"host {_q(raw)} is not a valid host name or IP address"))
        return
    kind, host = parsed
    if _any_domain(section.get("blocked_domains", []), kind, host, blocked=True):
        out.add(("network.blocked", f"host {_q(host)} is blocked by the workspace policy"))
    if not _any_domain(section.get("allowed_domains", []), kind, host):
        out.add(("network.not_allowed", f"host {_q(host)} is not in the allowed domains"))


def _filesystem(content: dict, action: dict, out: set) -> None:
    path, operation = action.get("path"), action.get("operation")
    if not isinstance(path, str):
        out.add(("input.invalid", "filesystem action needs a string path"))
    if isinstance(operation, str) and operation not in FILE_OPERATIONS:
        out.add(("input.invalid", f"unknown filesystem operation {_q(operation)}; expected one of: {_OPERATION_LIST}"))
    if not isinstance(operation, str):
        out.add(("input.invalid", f"filesystem action needs an operation: one of {_OPERATION_LIST}"))
    if not isinstance(path, str) or operation not in FILE_OPERATIONS:
        return
    section = _section(content, "permissions", "filesystem")
    if section is None:
        out.add(("fs.missing", "the workspace policy has no filesystem permissions (permissions.filesystem)"))
        return
    if section.get("enabled", True) is not True:
        out.add(("fs.disabled", "filesystem access is disabled by the workspace policy"))
        return
    operations = section.get("allowed_operations")
    if operations is not None and operation not in operations:
        out.add(("fs.operation", f"operation {_q(operation)} is not in the allowed filesystem operations"))
    if not _normal_path(path):
        out.add(("fs.invalid_path", f"path {_q(path)} is not an absolute normalised path"))
        return
    if any(_path_matches(p, path) for p in section.get("blocked_paths", [])):
        out.add(("fs.blocked", f"path {_q(path)} is blocked by the workspace policy"))
    if not any(_path_matches(p, path) for p in section.get("allowed_paths", [])):
        out.add(("fs.not_allowed", f"path {_q(path)} is not in the allowed paths"))
    extensions = {_ascii_lower(e if e.startswith(".") else "." + e) for e in section.get("allowed_extensions", [])}
    if extensions and operation != "list" and _extension(path) not in extensions:
        out.add(("fs.ext", f"the extension of path {_q(path)} is not in the allowed extensions"))


def _api(content: dict, action: dict, out: set) -> None:
    name = action.get("name")
    if not _non_empty_string(name):
        out.add(("input.invalid", "api action needs a non-empty string name"))
        return
    if _has_control(name):
        out.add(("input.invalid", "api action name holds a control character"))
        return
    section = _section(content, "permissions", "apis")
    if section is None:
        out.add(("api.missing", "the workspace policy has no API permissions (permissions.apis)"))
        return
    if _any_name(section.get("blocked_apis", []), name):
        out.add(("api.blocked", f"api {_q(name)} is blocked by the workspace policy"))
    if not _any_name(section.get("allowed_apis", []), name):
        out.add(("api.not_allowed", f"api {_q(name)} is not in the allowed APIs"))


def _model(content: dict, action: dict, out: set) -> None:
    name, given = action.get("name"), action.get("provider")
    valid = True
    if not _non_empty_string(name):
        out.add(("input.invalid", "model action needs a non-empty string name"))
        valid = False
    elif _has_control(name):
        out.add(("input.invalid", "model action name holds a control character"))
        valid = False
    if given is not None and not _non_empty_string(given):
        out.add(("input.invalid", "model action provider must be a non-empty string"))
        valid = False
    elif _has_control(given):
        out.add(("input.invalid", "model action provider holds a control character"))
        valid = False
    if not valid:
        return
    section = _section(content, "agent", "models")
    if section is None:
        out.add(("model.missing", "the workspace policy has no model permissions (agent.models)"))
        return
    provider = _provider(name, given)
    providers = {_ascii_lower(p) for p in section.get("allowed_providers", [])}
    if provider is None:
        out.add(("model.provider_not_allowed", f"the provider of model {_q(name)} is unknown, so it is not allowed"))
    elif provider not in providers:
        out.add(("model.provider_not_allowed",
                 f"provider {_q(provider)} of model {_q(name)} is not in the allowed providers"))
    if _any_name(section.get("denied_models", []), name):
        out.add(("model.denied", f"model {_q(name)} is denied by the workspace policy"))
    allowed = section.get("allowed_models", [])
    if allowed and not _any_name(allowed, name):
        out.add(("model.not_allowed", f"model {_q(name)} is not in the allowed models"))


def _rate_limit(content: dict, action: dict, out: set) -> None:
    kind, amount, usage = action.get("kind"), action.get("amount"), action.get("usage")
    valid = True
    if kind not in ("request", "token"):
        out.add(("input.invalid", "rate_limit action kind must be 'request' or 'token'"))
        valid = False
    if not _safe_count(amount):
        out.add(("input.invalid", f"rate_limit action amount must be a whole number from 0 to {MAX_SAFE_INTEGER}"))
        valid = False
    if not (isinstance(usage, dict) and _safe_count(usage.get("minute")) and _safe_count(usage.get("hour"))):
        out.add(("input.invalid",
                 f"rate_limit action usage must have whole numbers minute and hour from 0 to {MAX_SAFE_INTEGER}"))
        valid = False
    if not valid:
        return
    section = _section(content, "rate_limits")
    if section is None:
        return  # no rate_limits section: no limit (DESIGN.md section 4)
    limits = section.get("requests" if kind == "request" else "tokens") or {}
    for window in ("minute", "hour"):
        maximum = limits.get(f"max_per_{window}")
        used = usage[window]
        if maximum is not None and used + amount > maximum:
            out.add(("rate_limit.exceeded", f"{kind} rate limit exceeded: {int(used)} used + {int(amount)} "
                                            f"requested > {maximum} per {window}"))


_DOMAINS = {"tool": _tool, "capability": _tool, "network": _network, "filesystem": _filesystem, "api": _api,
            "model": _model, "rate_limit": _rate_limit}


def _sorted(pairs: set[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"rule": rule, "message": message} for rule, message in sorted(pairs)]


def decide(content: dict[str, Any], input_document: Any, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The decision for ``{"action": ..., "context": ...}`` under the raw policy ``content``."""
    action = input_document.get("action") if isinstance(input_document, dict) else None
    out: set[tuple[str, str]] = set()
    if not isinstance(action, dict):
        out.add(("input.invalid", "input.action must be an object"))
    elif not isinstance(action.get("type"), str):
        out.add(("input.invalid", f"input.action.type must be one of: {_TYPE_LIST}"))
    elif action["type"] not in _DOMAINS:
        out.add(("input.invalid", f"unknown action type {_q(action['type'])}; expected one of: {_TYPE_LIST}"))
    else:
        _DOMAINS[action["type"]](content, action, out)
    return {"allow": not out, "violations": _sorted(out), "policy": meta or {}}


def _string_list(value: Any) -> bool:
    return isinstance(value, list) and all(_non_empty_string(v) for v in value)


def check_manifest(content: dict[str, Any], manifest: Any, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The push-gate check of an agent manifest (see the manifest module's METADATA)."""
    out: set[tuple[str, str]] = set()
    warnings: set[tuple[str, str]] = set()
    doc = manifest if isinstance(manifest, dict) else {}
    if not isinstance(manifest, dict):
        out.add(("input.invalid", "the manifest must be an object"))
    agent = doc.get("agent")
    if agent is not None and not isinstance(agent, dict):
        out.add(("input.invalid", "manifest field agent must be an object"))
    agent = agent if isinstance(agent, dict) else {}
    llm = agent.get("llm")
    if llm is not None and not isinstance(llm, dict):
        out.add(("input.invalid", "manifest field agent.llm must be an object"))
    llm = llm if isinstance(llm, dict) else {}
    for field in ("model", "provider"):
        if llm.get(field) is not None and not _non_empty_string(llm[field]):
            out.add(("input.invalid", f"manifest field agent.llm.{field} must be a non-empty string"))
    tools_list = doc.get("tools")
    if tools_list is not None and not _string_list(tools_list):
        out.add(("input.invalid", "manifest field tools must be a list of non-empty strings"))
    capabilities = doc.get("capabilities")
    if capabilities is not None and not isinstance(capabilities, dict):
        out.add(("input.invalid", "manifest field capabilities must be an object"))
    provides = capabilities.get("provides") if isinstance(capabilities, dict) else None
    if provides is not None and not _string_list(provides):
        out.add(("input.invalid", "manifest field capabilities.provides must be a list of non-empty strings"))

    model = llm.get("model") if _non_empty_string(llm.get("model")) else None
    given = llm.get("provider") if _non_empty_string(llm.get("provider")) else None
    models = _section(content, "agent", "models")
    if models is None and (model is not None or given is not None):
        out.add(("manifest.model_not_allowed",
                 "the workspace policy has no model permissions (agent.models), so no model is allowed"))
    if models is not None and (model is not None or given is not None):
        provider = _provider(model, given)
        providers = {_ascii_lower(p) for p in models.get("allowed_providers", [])}
        if provider is None and model is not None:
            out.add(("manifest.provider_not_allowed",
                     f"the provider of agent model {_q(model)} is unknown, so it is not allowed"))
        if provider is not None and provider not in providers:
            out.add(("manifest.provider_not_allowed", f"agent provider {_q(provider)} is not in the allowed providers"))
        if model is not None and _any_name(models.get("denied_models", []), model):
            out.add(("manifest.model_denied", f"agent model {_q(model)} is denied by the workspace policy"))
        allowed = models.get("allowed_models", [])
        if model is not None and allowed and not _any_name(allowed, model):
            out.add(("manifest.model_not_allowed", f"agent model {_q(model)} is not in the allowed models"))

    names = set(tools_list if _string_list(tools_list) else []) | set(provides if _string_list(provides) else [])
    capability_section = _section(content, "agent", "capabilities")
    tools_section = _section(content, "permissions", "tools")
    for name in names:
        if capability_section is None and tools_section is None:
            out.add(("manifest.tool_not_allowed",
                     f"tool {_q(name)} is not allowed: the workspace policy has no tool permissions"))
            continue
        caps, tools = capability_section or {}, tools_section or {}
        if _any_name(list(caps.get("denied_tools", [])) + list(tools.get("blocked_tools", [])), name):
            out.add(("manifest.tool_denied", f"tool {_q(name)} is denied by the workspace policy"))
        if not _any_name(list(caps.get("allowed_tools", [])) + list(tools.get("allowed_tools", [])), name):
            out.add(("manifest.tool_not_allowed", f"tool {_q(name)} is not in the allowed tools"))

    compliance = _section(content, "compliance")
    logging_ = doc.get("logging")
    if compliance and compliance.get("require_audit_logging") is True and not (
        isinstance(logging_, dict) and logging_.get("enabled") is True
    ):
        warnings.add(("manifest.compliance",
                      "the workspace policy requires audit logging; the manifest does not declare logging.enabled: true"))
    return {"allow": not out, "violations": _sorted(out), "warnings": _sorted(warnings), "policy": meta or {}}


# -- the runtime's normalisation (DESIGN.md section 4, docs/policy-semantics.md) ------------------------------

#: The runtime refuses longer strings and deeper (normalised) paths as bad arguments (docs/architecture.md).
LONGEST_VALUE = 2**12
DEEPEST_PATH = 2**8

_REQUIRED = "required"
# Per action type: field -> default (None: optional, _REQUIRED: must be given).
_ACTION_FIELDS: dict[str, dict[str, Any]] = {
    "tool": {"name": _REQUIRED},
    "capability": {"name": _REQUIRED},
    "api": {"name": _REQUIRED},
    "model": {"name": _REQUIRED, "provider": None},
    "network": {"host": _REQUIRED, "protocol": "https"},
    "filesystem": {"path": _REQUIRED, "operation": "read"},
    "rate_limit": {"kind": _REQUIRED, "amount": 1},
}


class _Refused(Exception):
    """The runtime must refuse the action before any query (``InvalidActionError``)."""


def _text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > LONGEST_VALUE:
        raise _Refused
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused from None
    return value


def _name(value: Any) -> str:
    value = _text(value)
    if value == "" or _has_control(value):
        raise _Refused
    return value


def normalize_host(raw: str) -> str:
    """A valid host as the Rego reads it (no port, brackets or trailing dot), ASCII-lower-cased; else as it came."""
    folded = _ascii_lower(raw)
    parsed = parse_host(folded)
    return parsed[1] if parsed is not None else folded


def normalize_path(raw: str) -> str:
    """An absolute path resolved lexically (never above ``/``); a relative one as it came."""
    if not raw.startswith("/"):
        return raw
    resolved = posixpath.normpath(raw)
    if resolved.startswith("//"):
        resolved = "/" + resolved.lstrip("/")
    return resolved


def _field(field: str, value: Any) -> Any:
    if field in ("name", "provider"):
        return _name(value)
    if field == "protocol":
        return _ascii_lower(_name(value))
    if field == "host":
        return normalize_host(_text(value))
    if field == "path":
        value = _text(value)
        if "\0" in value:
            raise _Refused
        resolved = normalize_path(value)
        if resolved.startswith("/") and len([s for s in resolved.split("/") if s]) > DEEPEST_PATH:
            raise _Refused
        return resolved
    if field == "operation":
        if value not in FILE_OPERATIONS:
            raise _Refused
        return value
    if field == "kind":
        if value not in ("request", "token"):
            raise _Refused
        return value
    # amount
    if type(value) is not int or not 0 <= value <= MAX_SAFE_INTEGER:
        raise _Refused
    return value


def normalize_action(action: Any) -> dict[str, Any] | None:
    """The action the runtime sends (defaults filled in, values normalised), or None when it must refuse it."""
    if not isinstance(action, dict):
        return None
    fields = _ACTION_FIELDS.get(action.get("type")) if isinstance(action.get("type"), str) else None
    if fields is None or any(key != "type" and key not in fields for key in action):
        return None
    result: dict[str, Any] = {"type": action["type"]}
    try:
        for field, default in fields.items():
            if field not in action and default == _REQUIRED:
                return None
            value = action.get(field, default)
            if value is None and default is None:
                continue
            result[field] = _field(field, value)
    except _Refused:
        return None
    return result
