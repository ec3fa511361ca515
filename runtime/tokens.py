"""Token estimates of chat calls: what an agent reserves before a call and counts after it.

About four characters a token (OpenAI's rule of thumb for English) plus a few
tokens of framing per message. The estimates err high on purpose: the rate
limiter they feed may be stricter than the real count, never looser.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["estimate_tokens", "estimate_used", "total_tokens"]

_CHARS_PER_TOKEN = 4
_TOKENS_PER_MESSAGE = 4  # role and framing tokens of the chat format


def estimate_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """A rough prompt size in tokens (text parts only): what is reserved before the model answers."""
    chars = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(part["text"]) for part in content if isinstance(part, Mapping) and isinstance(part.get("text"), str))
    return math.ceil(chars / _CHARS_PER_TOKEN) + _TOKENS_PER_MESSAGE * len(messages)


def total_tokens(response: Any) -> int | None:
    """The response's ``usage.total_tokens`` when it is a non-negative integer, else None."""
    usage = response.get("usage") if isinstance(response, Mapping) else None
    total = usage.get("total_tokens") if isinstance(usage, Mapping) else None
    return total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None


def _text_chars(value: Any) -> int:
    """Characters of every string (keys included) anywhere in ``value``; iterative, so any depth counts."""
    chars, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return chars


def estimate_used(messages: Sequence[Mapping[str, Any]], response: Any) -> int:
    """Tokens a call used, from its sizes, for a server that reports no usage.

    Every character of the request's messages and of the response's ``choices``
    (text, tool calls, field names) over four, plus the per-message framing: never
    less than the true text divided by four.
    """
    choices = response.get("choices") if isinstance(response, Mapping) else None
    chars = _text_chars(list(messages)) + _text_chars(choices)
    return math.ceil(chars / _CHARS_PER_TOKEN) + _TOKENS_PER_MESSAGE * len(messages)
