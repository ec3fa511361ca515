"""The bytes OPAEngine sends: data-API targets, request heads and JSON bodies, each made once and reused.

Per decision the engine would otherwise quote the path, format the headers and
build a JSON encoder again (``json.dumps`` with options makes a new one per
call); here the target and head of each path are made once (bounded), one
encoder writes every body, and the context the enforcer sends with every query
(``{"agent", "workspace"}``) is encoded once and spliced in while it stays
equal to the copy it was encoded from.
"""

from __future__ import annotations

import copy
import json
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from .asynchttp import encode_head
from .errors import InvalidActionError

__all__ = ["OPARequests", "ssl_context"]

# Paths remembered (the enforcer uses a handful; the bound is for direct callers).
_MAX_PATHS = 1024
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class OPARequests:
    """Targets, heads and bodies of ``POST /v1/data/<path>?provenance=true`` to one OPA."""

    def __init__(self, host: str, port: int | None, default_port: int, prefix: str, headers: Mapping[str, str]) -> None:
        """ValueError now for a header or URL prefix that could split a request (CR, LF), not at a decision."""
        self._host, self._port, self._default_port = host, port, default_port
        self._prefix = prefix
        self.headers = dict(headers)
        encode_head("POST", prefix + "/", host, port, default_port, self.headers)
        self._targets: dict[str, str] = {}
        self._heads: dict[str, bytes] = {}
        self._context: tuple[Any, str] | None = None

    def target(self, path: str) -> str:
        """``<prefix>/v1/data/<path>?provenance=true``, each segment quoted."""
        target = self._targets.get(path)
        if target is None:
            segments = [quote(segment, safe="") for segment in path.strip("/").split("/")]
            target = f"{self._prefix}/v1/data/{'/'.join(segments)}?provenance=true"
            if len(self._targets) < _MAX_PATHS:
                self._targets[path] = target
        return target

    def head(self, path: str) -> bytes:
        """The request line and headers of the POST for ``path``, up to its ``Content-Length``."""
        head = self._heads.get(path)
        if head is None:
            head = encode_head("POST", self.target(path), self._host, self._port, self._default_port, self.headers)
            if len(self._heads) < _MAX_PATHS:
                self._heads[path] = head
        return head

    def body(self, input: Mapping[str, Any]) -> bytes:  # noqa: A002 - OPA's name
        """``{"input": input}`` as compact UTF-8 JSON; InvalidActionError if it is not JSON."""
        context = input.get("context") if type(input) is dict and len(input) == 2 and "action" in input else None
        if context is None:
            return ('{"input":' + _encode(input) + "}").encode("utf-8")
        known = self._context
        if known is None or known[0] != context:
            known = self._context = (copy.deepcopy(context), _encode(context))
        return ('{"input":{"action":' + _encode(input["action"]) + ',"context":' + known[1] + "}}").encode("utf-8")


def ssl_context(verify: bool | ssl.SSLContext) -> ssl.SSLContext:
    """``verify`` as a context: the one given, the system's CAs (True), or no verification (False)."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _encode(value: Any) -> str:
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidActionError(f"input is not JSON: {exc}") from None
