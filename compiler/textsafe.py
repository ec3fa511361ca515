"""Values made safe to quote in messages, warnings, exceptions and logs: escaped, cut, credentials removed.

Every value that came from outside (a tool name, a host, a path, a backend's
answer, a URL the user configured) goes through :func:`quote_value` (or
:func:`clean`) before it is written into a message, and every URL through
:func:`redact_url`. The rules (docs/security.md, "Log hygiene"):

- control characters (C0, DEL, C1) and the Unicode line and paragraph
  separators, bidirectional overrides and isolates are written as escapes
  (``\\n``, ``\\t``, ``\\r``, ``\\xNN``, ``\\uNNNN``), so a value can neither start a
  new log line nor rewrite a terminal; a backslash is left as it is (the text
  is for people; structured logs are JSON);
- a value is cut at :data:`MAX_QUOTED` characters (after escaping) and marked
  ``...(cut, N chars)`` (N: the length of the original value); a whole message at :data:`MAX_MESSAGE`;
- userinfo (``user:password@``) is removed from URLs, shown as ``***@``.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MAX_MESSAGE", "MAX_QUOTED", "clean", "quote_value", "redact_text", "redact_url"]

#: Characters of one quoted value kept in a message.
MAX_QUOTED = 200
#: Characters of a whole message (an exception's text, a violation's message) kept.
MAX_MESSAGE = 2000

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# scheme://userinfo@ anywhere in a text; and a bare user:password@host (a host given with credentials).
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s'\"]*@")
_BARE_USERINFO = re.compile(r"(?<![\w.:/@-])([^\s'\"/@:]+:[^\s'\"/@]*)@(?=[\w\[])")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def clean(value: object, limit: int = MAX_QUOTED) -> str:
    """``str(value)`` with control characters escaped and cut at ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    size = len(text)
    # Escaping only lengthens a text: what lies beyond ``limit`` raw characters is cut anyway.
    escaped = _UNSAFE.sub(_escape, text[: limit + 1])
    if size > limit or len(escaped) > limit:
        return f"{escaped[:limit]}...(cut, {size} chars)"
    return escaped


def quote_value(value: object, limit: int = MAX_QUOTED) -> str:
    """A value as it is quoted into a message: ``'clean(value)'`` with credentials removed."""
    return "'" + clean(redact_text(value if isinstance(value, str) else str(value)), limit) + "'"


def redact_url(url: str) -> str:
    """``url`` without its userinfo (``https://user:pw@host/x`` -> ``https://***@host/x``), escaped and cut."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return clean(redact_text(url), MAX_QUOTED)
    if "@" in parts.netloc:
        host = parts.netloc.rpartition("@")[2]
        url = urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))
    return clean(url, MAX_QUOTED)


def redact_text(text: str) -> str:
    """``text`` with the userinfo of every URL in it, and of ``user:password@host``, replaced by ``***``."""
    if "@" not in text:
        return text
    text = _URL_USERINFO.sub(r"\1***@", text)
    return _BARE_USERINFO.sub("***@", text)
