"""Tool and capability arguments: a JSON object checked, copied and bounded before it becomes ``input.action.args``.

The built-in Rego library ignores ``args``; an organisation's extension rules
(``sekuire policy build --extension``) decide on them, such as a refund limit on
``args.amount``. So that every engine reads the same document, the arguments
must be plain JSON: an object with string keys; values ``None``, ``bool``,
integers within +-2**53 (exact in every JSON parser), finite floats, strings
without lone surrogates, lists (tuples become lists) and objects. At most
:data:`MAX_ARGS_DEPTH` levels and :data:`MAX_ARGS_BYTES` bytes of compact JSON.
Anything else is :class:`InvalidActionError` (a bad argument, never a decision).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from ..compiler.textsafe import quote_value
from .errors import InvalidActionError

__all__ = ["MAX_ARGS_BYTES", "MAX_ARGS_DEPTH", "check_args"]

#: Compact JSON size of the arguments, in bytes.
MAX_ARGS_BYTES = 64 * 1024
#: Nesting of objects and lists, the arguments object itself being level 1.
MAX_ARGS_DEPTH = 32
_MAX_SAFE_INTEGER = 2**53


def check_args(value: Any) -> dict[str, Any]:
    """A plain-JSON copy of ``value`` (a mapping), or InvalidActionError naming the offending member."""
    if not isinstance(value, Mapping):
        raise InvalidActionError(f"args must be a JSON object, not {type(value).__name__}")
    copied = _copy(value, "args", 1)
    try:
        size = len(json.dumps(copied, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidActionError("args holds a string that is not valid Unicode (a lone surrogate)") from None
    if size > MAX_ARGS_BYTES:
        raise InvalidActionError(f"args is {size} bytes of JSON, over the {MAX_ARGS_BYTES}-byte limit")
    assert isinstance(copied, dict)
    return copied


def _copy(value: Any, where: str, depth: int) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if not -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
            raise InvalidActionError(f"{where}: integer beyond +-2**53 (not exact in every JSON parser)")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidActionError(f"{where}: {value!r} is not a JSON number")
        return float(value)
    if depth > MAX_ARGS_DEPTH:
        raise InvalidActionError(f"{where}: nested deeper than {MAX_ARGS_DEPTH} levels")
    if isinstance(value, Mapping):
        copied: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidActionError(f"{where}: keys must be strings, not {type(key).__name__}")
            copied[key] = _copy(item, f"{where}.{quote_value(key)}", depth + 1)
        return copied
    if isinstance(value, (list, tuple)):
        return [_copy(item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value)]
    raise InvalidActionError(f"{where}: {type(value).__name__} is not a JSON value")
