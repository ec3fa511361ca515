"""The one canonical JSON serializer used for every policy hash and signature.

UTF-8, object keys sorted by code point, separators ``,`` and ``:``, no
whitespace, non-ASCII written as UTF-8, NaN and Infinity rejected
(DESIGN.md section 3). OPA's bundle hashing uses a different canonical form;
that one lives in :mod:`sekuire.compiler.bundle_signing`.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import PolicyFormatError

__all__ = ["canonical_json", "strict_loads"]


def canonical_json(value: Any) -> bytes:
    """Serialize ``value`` canonically; raise PolicyFormatError for NaN/Infinity."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        # Inside the try: a lone surrogate ("\ud800" in the JSON) has no UTF-8 form (UnicodeEncodeError).
        return text.encode("utf-8")
    except ValueError as exc:
        raise PolicyFormatError(f"cannot be canonicalised: {exc}") from exc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # Two parsers may keep different duplicates: the hash would not pin the meaning.
            raise PolicyFormatError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise PolicyFormatError(f"{name} is not valid JSON")


def strict_loads(data: bytes | str) -> Any:
    """Parse JSON, rejecting duplicate keys and NaN/Infinity (which canonical JSON cannot carry)."""
    try:
        if isinstance(data, bytes):
            # json.loads would guess UTF-16/32 from the first bytes; the format is UTF-8 only.
            data = data.decode("utf-8")
        return json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except PolicyFormatError:
        raise
    except UnicodeDecodeError as exc:
        raise PolicyFormatError(f"not UTF-8: {exc.reason} at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise PolicyFormatError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise PolicyFormatError("malformed JSON: nested too deeply") from exc
