"""Decision-log masking with OPA's semantics: erase and upsert by JSON pointer before an event leaves the process.

OPA masks an event with the rules of ``data.system.log.mask``: a JSON pointer
string (or ``{"op": "remove", "path"}``) erases the value there, if there is
one; ``{"op": "upsert", "path", "value"}`` sets it, creating the objects on
the way. Paths start with ``/input`` or ``/result``. The event lists what was
done: ``erased`` and ``masked``, each sorted. :class:`Mask` applies the same
rules to the events of the embedded engine, so a secret in an input is gone
before any sink sees it, and :func:`mask_rego` writes them as the ``system.log``
module an OPA fleet loads, so both kinds of event are masked alike.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import InvalidActionError

__all__ = ["Mask", "MaskRule", "mask_rego"]

#: A rule as OPA's ``system.log.mask`` gives it: a JSON pointer, or ``{"op": "remove" | "upsert", "path", "value"?}``.
MaskRule = str | Mapping[str, Any]

_ROOTS = ("input", "result")


def _pointer(path: object) -> list[str]:
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidActionError(f"mask path {path!r} must be a JSON pointer (/input/... or /result/...)")
    tokens = [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]
    if tokens[0] not in _ROOTS or len(tokens) < 2 or not all(tokens):
        raise InvalidActionError(f"mask path {path!r} must be below /input or /result")
    return tokens


class Mask:
    """Masking rules, checked once; :meth:`apply` masks an event (a copy) as OPA would."""

    def __init__(self, rules: Iterable[MaskRule]) -> None:
        """Check each rule (a bad one raises InvalidActionError naming it)."""
        erase: list[tuple[str, list[str]]] = []
        upsert: list[tuple[str, list[str], Any]] = []
        self.rules: list[MaskRule] = []
        for rule in rules:
            if isinstance(rule, str):
                erase.append((rule, _pointer(rule)))
            elif isinstance(rule, Mapping) and rule.get("op") in ("remove", "upsert"):
                tokens = _pointer(rule.get("path"))
                if rule["op"] == "remove":
                    erase.append((rule["path"], tokens))
                elif "value" not in rule:
                    raise InvalidActionError(f"mask rule {dict(rule)!r}: an upsert needs a value")
                else:
                    json.dumps(rule["value"])  # a JSON value, or TypeError here rather than in a sink
                    upsert.append((rule["path"], tokens, rule["value"]))
            else:
                raise InvalidActionError(f"mask rule {rule!r}: expected a JSON pointer or an object with op remove/upsert")
            self.rules.append(rule)
        self._erase = sorted(erase, key=lambda item: item[0])
        self._upsert = sorted(upsert, key=lambda item: item[0])

    def __bool__(self) -> bool:
        return bool(self.rules)

    def apply(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The event with erased values removed and upserted values set, and ``erased``/``masked`` listed."""
        masked = dict(event)
        for root in _ROOTS:  # only what is masked is copied; the caller's input stays untouched
            if root in masked:
                masked[root] = copy.deepcopy(masked[root])
        erased = [path for path, tokens in self._erase if _remove(masked, tokens)]
        upserted = [path for path, tokens, value in self._upsert if _set(masked, tokens, value)]
        if erased:
            masked["erased"] = sorted(erased)
        if upserted:
            masked["masked"] = sorted(upserted)
        return masked


def _walk(document: Any, tokens: list[str]) -> Any:
    for token in tokens:
        if isinstance(document, dict) and token in document:
            document = document[token]
        elif isinstance(document, list) and token.isdigit() and int(token) < len(document):
            document = document[int(token)]
        else:
            return None
    return document


def _remove(document: dict[str, Any], tokens: list[str]) -> bool:
    parent, last = _walk(document, tokens[:-1]), tokens[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
        return True
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
        return True
    return False


def _set(document: dict[str, Any], tokens: list[str], value: Any) -> bool:
    node: Any = document
    for token in tokens[:-1]:
        if not isinstance(node, dict):
            return False
        node = node.setdefault(token, {})
    if not isinstance(node, dict):
        return False
    node[tokens[-1]] = copy.deepcopy(value)
    return True


def mask_rego(rules: Iterable[MaskRule]) -> str:
    """The rules as OPA's ``system.log`` module (``mask contains ...``), for the OPAs of a fleet."""
    lines = ["package system.log", ""]
    for rule in Mask(rules).rules:
        value = rule if isinstance(rule, str) else dict(rule)
        lines.append(f"mask contains {json.dumps(value, sort_keys=True)}")
    return "\n".join(lines) + "\n"
