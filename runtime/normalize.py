"""Argument checks and lexical normalisation of actions before they become OPA input.

Pure functions. Two kinds of bad input are told apart:

- a *bad argument* (not a string, an empty name, a control character in a
  name, NUL in a path, an unknown
  operation, a value longer than :data:`MAX_VALUE_LENGTH`, a path deeper than
  :data:`MAX_PATH_SEGMENTS`) is a caller bug and
  raises :class:`InvalidActionError` before any query;
- a *hostile value* of the right type (``evil.com/@x``, ``https://host``,
  `` host`` with whitespace around it, ``relative/path``, ``/a/%2e%2e``) is
  passed through, so the Rego denies it with ``network.invalid_host`` or
  ``fs.invalid_path`` and the decision log shows it.

The Rego normalises hosts again and accepts only paths already in normal form
(DESIGN.md section 4), so a client querying OPA directly gets the same decision;
normalising here gives cache hits for equivalent spellings and clearer errors.
"""

from __future__ import annotations

import ipaddress
import os
import re
import string
from collections.abc import Callable, Mapping
from typing import Any

from ..compiler.rego.lowering import FILE_OPERATIONS as _OPERATIONS
from ..compiler.rego.lowering import MAX_SAFE_INTEGER
from .args import check_args
from .errors import InvalidActionError

__all__ = [
    "ACTION_TYPES",
    "FILE_OPERATIONS",
    "MAX_AMOUNT",
    "MAX_PATH_SEGMENTS",
    "MAX_VALUE_LENGTH",
    "RATE_LIMIT_KINDS",
    "check_amount",
    "check_kind",
    "check_name",
    "check_operation",
    "check_protocol",
    "normalize_action",
    "normalize_host",
    "normalize_path",
]

#: Longer strings are refused: the longest legitimate value is a path (Linux PATH_MAX is 4096).
MAX_VALUE_LENGTH = 4096

#: Deeper paths are refused: they bound the work of one decision (past about 400 segments the embedded
#: engine's VM runs out of its instruction budget and the query is finished by the slower interpreter).
MAX_PATH_SEGMENTS = 256

#: Rate-limit amounts stay exact in every JSON parser (and in the Rego's arithmetic).
MAX_AMOUNT = MAX_SAFE_INTEGER

#: The filesystem operations a policy's ``allowed_operations`` can name (the compiler's list).
FILE_OPERATIONS = frozenset(_OPERATIONS)

RATE_LIMIT_KINDS = frozenset({"request", "token"})

# C0 (U+0000-U+001F), DEL and C1 (U+007F-U+009F): the Rego's lib.has_control.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
# The Rego's forms: a port is 0-65535 without leading zeros; "[v6]" or "[v6]:port"; "name" or "name:port".
_PORT = r"(?:0|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_BRACKETED = re.compile(rf"\[([0-9a-f:.]+)\](?::{_PORT})?")
# Only characters a host name may have: rewriting anything else ("a ." -> "a ") could make a spelling
# that a second pass (or the Rego's own normalisation) reads differently.
_NAME_PORT = re.compile(rf"([a-z0-9._-]+)(?::{_PORT})?")
_NAME_CHARS = string.ascii_lowercase + string.digits + "._-"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_string(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidActionError(f"{field} must be a string, not {type(value).__name__}")
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidActionError(f"{field} is longer than {MAX_VALUE_LENGTH} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate has no UTF-8 form: OPA and the embedded engine would each see something else.
        raise InvalidActionError(f"{field} is not valid Unicode") from None
    return value


def check_name(name: object, field: str = "name") -> str:
    """A tool, capability, API, model or provider name: a non-empty string without control characters.

    NUL and the other C0, DEL and C1 control characters are refused here and are
    ``input.invalid`` in the Rego, so a direct query is judged the same.
    """
    # The common case in one pass of C: printable ASCII has no control character and always encodes.
    if type(name) is str and name.isascii() and name.isprintable() and 0 < len(name) <= MAX_VALUE_LENGTH:
        return name
    name = _check_string(name, field)
    if not name:
        raise InvalidActionError(f"{field} must not be empty")
    if _CONTROL.search(name):
        raise InvalidActionError(f"{field} contains a control character")
    return name


def normalize_host(host: object) -> str:
    """Fold ASCII case, drop a ``:port``, IPv6 brackets and one trailing dot.

    This mirrors the Rego's own host normalisation and is no more lenient: a
    spelling the Rego calls ``network.invalid_host`` (``[api.openai.com]``,
    ``host:99999``, a non-ASCII letter that folds to ASCII, whitespace around
    the host: it is not stripped) comes back unchanged for the Rego to deny.
    Only a non-string or oversized host raises.
    """
    if type(host) is str and host.isascii() and len(host) <= MAX_VALUE_LENGTH:
        value = host.lower()  # on ASCII text, exactly the ASCII fold
        if value and not value.strip(_NAME_CHARS):  # a plain name (the common case): no port, no brackets
            return value if value.endswith("..") else value.removesuffix(".")
    else:
        value = _check_string(host, "host").translate(_ASCII_LOWER)
    bracketed = _BRACKETED.fullmatch(value)
    if bracketed:
        return bracketed[1] if _is_ipv6(bracketed[1]) else value
    named = _NAME_PORT.fullmatch(value)
    if named:
        name = named[1]
        if name.endswith(".."):
            # The Rego removes one trailing dot again: dropping one here would let "host.." pass as "host".
            return value
        return name[:-1] if name.endswith(".") else name
    return value


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def normalize_path(path: object) -> str:
    """Collapse ``//``, resolve ``.`` and ``..`` lexically, never above ``/``.

    A relative path is returned unchanged rather than resolved against the
    working directory (which would make a decision depend on where the agent
    runs): the Rego denies it as ``fs.invalid_path``. Symlinks are not resolved:
    the policy speaks of the names an agent uses.
    """
    if type(path) is str and _normal_ascii_path(path):
        return path
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    value = _check_string(path, "path")
    if "\0" in value:
        raise InvalidActionError("path contains NUL")
    if not value.startswith("/"):
        return value
    parts: list[str] = []
    for segment in value.split("/"):
        if segment == "..":
            if parts:
                parts.pop()
        elif segment not in ("", "."):
            parts.append(segment)
    if len(parts) > MAX_PATH_SEGMENTS:
        raise InvalidActionError(f"path has more than {MAX_PATH_SEGMENTS} segments")
    return "/" + "/".join(parts)


def _normal_ascii_path(path: str) -> bool:
    """Already in normal form (what :func:`normalize_path` would return unchanged), by substring tests only:
    absolute, no empty segment and no segment starting with ``.`` (so no ``.`` or ``..``), no NUL."""
    return (
        path.isascii()
        and 1 < len(path) <= MAX_VALUE_LENGTH
        and path[0] == "/"
        and path[-1] != "/"
        and "//" not in path
        and "/." not in path
        and "\0" not in path
        and path.count("/") <= MAX_PATH_SEGMENTS
    )


def check_operation(operation: object) -> str:
    """One of :data:`FILE_OPERATIONS`."""
    if not isinstance(operation, str) or operation not in FILE_OPERATIONS:
        raise InvalidActionError(f"unknown filesystem operation {_show(operation)}; expected one of {sorted(FILE_OPERATIONS)}")
    return operation


def check_protocol(protocol: object) -> str:
    """A URL scheme such as ``https`` or ``wss``, ASCII lower-cased."""
    name = check_name(protocol, "protocol")
    return name.lower() if name.isascii() else name.translate(_ASCII_LOWER)


def check_kind(kind: object) -> str:
    """A rate-limit kind: ``request`` or ``token``."""
    if not isinstance(kind, str) or kind not in RATE_LIMIT_KINDS:
        raise InvalidActionError(f"unknown rate-limit kind {_show(kind)}; expected one of {sorted(RATE_LIMIT_KINDS)}")
    return kind


def check_amount(amount: object) -> int:
    """A non-negative integer no larger than :data:`MAX_AMOUNT` (a negative one would refund quota)."""
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise InvalidActionError(f"amount must be an integer, not {type(amount).__name__}")
    if not 0 <= amount <= MAX_AMOUNT:
        raise InvalidActionError(f"amount must be between 0 and {MAX_AMOUNT}, not {amount}")
    return amount


_REQUIRED = object()

# The fields of each action type with their defaults (DESIGN.md section 4); a None default is optional.
_FIELDS: dict[str, dict[str, Any]] = {
    "tool": {"name": _REQUIRED, "args": None},
    "capability": {"name": _REQUIRED, "args": None},
    "api": {"name": _REQUIRED},
    "network": {"host": _REQUIRED, "protocol": "https"},
    "filesystem": {"path": _REQUIRED, "operation": "read"},
    "model": {"name": _REQUIRED, "provider": None},
    "rate_limit": {"kind": _REQUIRED, "amount": 1},
}

# A field means the same in every action type, so one check per field name.
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "name": check_name,
    "host": normalize_host,
    "protocol": check_protocol,
    "path": normalize_path,
    "operation": check_operation,
    "provider": lambda value: check_name(value, "provider"),
    "kind": check_kind,
    "amount": check_amount,
    "args": check_args,
}

#: The ``input.action.type`` values of the decision contract.
ACTION_TYPES = frozenset(_FIELDS)

# Per type: the keys an action may have, and (field, default, check) in order: one loop, no lookups.
_SPECS: dict[str, tuple[frozenset[str], tuple[tuple[str, Any, Callable[[Any], Any]], ...]]] = {
    kind: (frozenset({"type", *fields}), tuple((field, default, _CHECKS[field]) for field, default in fields.items()))
    for kind, fields in _FIELDS.items()
}


def normalize_action(action: Mapping[str, Any]) -> dict[str, Any]:
    """Check and normalise an ``input.action`` object; defaults filled in, unknown fields refused.

    A rate-limit action comes back without ``usage``: the enforcer adds the counters it keeps.
    """
    if not isinstance(action, Mapping):
        raise InvalidActionError(f"action must be an object, not {type(action).__name__}")
    kind = action.get("type")
    spec = _SPECS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise InvalidActionError(f"unknown action type {_show(kind)}; expected one of {sorted(ACTION_TYPES)}")
    keys, fields = spec
    if not keys.issuperset(action):
        unknown = set(action) - keys
        raise InvalidActionError(f"{kind} action has unknown fields {sorted(map(str, unknown))}")
    normalized: dict[str, Any] = {"type": kind}
    for field, default, check in fields:
        value = action.get(field, default)
        if value is _REQUIRED:
            raise InvalidActionError(f"{kind} action needs {field}")
        if value is None and default is None:
            continue
        normalized[field] = check(value)
    return normalized
