"""OPA's canonical JSON for bundle files: numbers kept as written, strings as Go writes them, file digests.

``data.json`` and ``.manifest`` are hashed in this form (object keys sorted by
UTF-8 bytes, no whitespace, numbers exactly as written, strings as Go's
``encoding/json`` writes them with HTML escaping off), so re-indenting a
data.json keeps its signature valid and changing a value does not. Other files
are hashed as raw bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ..errors import BundleError
from .tarball import DATA_FILE, MANIFEST_FILE

__all__ = ["HASHES", "HASH_ALGORITHM", "JSONNumber", "Struct", "canonical_form", "file_digest", "go_json", "is_structured", "parse_json_exact"]

HASH_ALGORITHM = "SHA-256"
# The SHA-2 family of OPA's per-file hash algorithms; OPA also takes MD5 and SHA-1, which we refuse.
HASHES = {
    "SHA-224": "sha224",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
    "SHA-512-224": "sha512_224",
    "SHA-512-256": "sha512_256",
}


@dataclass(frozen=True, slots=True)
class JSONNumber:
    """A JSON number kept exactly as written (Go's ``json.Number``)."""

    literal: str

    def __str__(self) -> str:
        return self.literal


class Struct(dict):  # type: ignore[type-arg]
    """An object written in insertion order, as Go writes a struct (maps are written sorted)."""


_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPE = re.compile('[\x00-\x1f"\\\\\u2028\u2029\ud800-\udfff]')
_ESCAPE_HTML = re.compile('[\x00-\x1f"\\\\\u2028\u2029\ud800-\udfff<>&]')
_ESCAPES = {
    '"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
    "\u2028": "\\u2028", "\u2029": "\\u2029", "<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
}  # fmt: skip


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _ESCAPES:
        return _ESCAPES[char]
    if "\ud800" <= char <= "\udfff":
        return "\ufffd"  # Go decodes a lone surrogate escape to U+FFFD and writes it literally
    return f"\\u{ord(char):04x}"


def _go_string(text: str, escape_html: bool) -> str:
    return '"' + (_ESCAPE_HTML if escape_html else _ESCAPE).sub(_escape, text) + '"'


def go_json(value: Any, *, escape_html: bool = False) -> bytes:
    """Compact JSON as Go's ``encoding/json`` writes it: maps sorted by key bytes, numbers as given."""
    parts: list[str] = []

    def emit(item: Any) -> None:
        if isinstance(item, JSONNumber):
            parts.append(item.literal)
        elif isinstance(item, str):
            parts.append(_go_string(item, escape_html))
        elif item is None:
            parts.append("null")
        elif isinstance(item, bool):
            parts.append("true" if item else "false")
        elif isinstance(item, int):
            parts.append(str(item))
        elif isinstance(item, float):
            try:
                parts.append(json.dumps(item, allow_nan=False))
            except ValueError:
                raise BundleError(f"cannot write {item!r} as JSON") from None
        elif isinstance(item, dict):
            pairs = [(_SURROGATE.sub("\ufffd", key), val) for key, val in item.items()]
            if not isinstance(item, Struct):
                pairs.sort(key=lambda pair: pair[0])  # code point order is UTF-8 byte order
            parts.append("{")
            for index, (key, val) in enumerate(pairs):
                parts.append(("," if index else "") + _go_string(key, escape_html) + ":")
                emit(val)
            parts.append("}")
        elif isinstance(item, (list, tuple)):
            parts.append("[")
            for index, val in enumerate(item):
                if index:
                    parts.append(",")
                emit(val)
            parts.append("]")
        else:
            raise BundleError(f"cannot write a {type(item).__name__} as JSON")

    emit(value)
    return "".join(parts).encode("utf-8")


def _exact_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        key = _SURROGATE.sub("\ufffd", key)
        if key in result:
            # Go keeps the last duplicate, other parsers the first: refuse rather than guess.
            raise BundleError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise BundleError(f"{name} is not valid JSON")


def parse_json_exact(data: bytes) -> Any:
    """Parse UTF-8 JSON keeping every number literal (:class:`JSONNumber`); duplicate keys refused."""
    try:
        return json.loads(
            data.decode("utf-8"),
            parse_int=JSONNumber,
            parse_float=JSONNumber,
            parse_constant=_reject_constant,
            object_pairs_hook=_exact_object,
        )
    except UnicodeDecodeError as exc:
        raise BundleError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise BundleError("malformed JSON: nested too deeply") from None


def is_structured(name: str) -> bool:
    """Whether OPA hashes the file's canonical JSON form rather than its bytes."""
    return name.rsplit("/", 1)[-1] in (DATA_FILE, MANIFEST_FILE)


def canonical_form(name: str, content: bytes) -> bytes:
    """The bytes OPA hashes for file ``name``: canonical JSON for data.json/.manifest, else the content."""
    if not is_structured(name):
        return content
    try:
        return go_json(parse_json_exact(content))
    except BundleError as exc:
        raise BundleError(f"{name}: cannot be hashed: {exc.message}") from None


def file_digest(name: str, content: bytes, algorithm: str = HASH_ALGORITHM) -> str:
    """Lower-case hex digest of a bundle file as its signature lists it."""
    hash_name = HASHES.get(algorithm)
    if hash_name is None:
        raise BundleError(f"{name}: unsupported hash algorithm {algorithm!r} (use {HASH_ALGORITHM})")
    return hashlib.new(hash_name, canonical_form(name, content)).hexdigest()
