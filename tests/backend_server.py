"""Real HTTP servers for runtime tests: a policy backend and an OpenAI-compatible chat server.

Both keep their state in memory and record every request, and both are served by
``http.server`` on 127.0.0.1 through the ``http_server`` fixture (which stops
them). The backend answers:

- ``GET /v1/workspaces/<ws>/policies/active`` with a strong ETag and 304 for a matching If-None-Match;
- ``GET /v1/keys/<id>``;
- ``POST /v1/workspaces/<ws>/agents`` (the push), recording the JSON it received;
- ``POST /v1/workspaces/<ws>/agents/<agent>/heartbeat`` with the active policy's hash;
- ``GET /v1/workspaces/<ws>/agents/<agent>/tasks`` (each queued task is handed out once) and
  ``POST .../tasks/<id>/result``, recording the results.
- ``POST /v1/agents`` (a push without a workspace), recorded under ``agents[""]``.
"""

from __future__ import annotations

import copy
import hashlib
import http.server
import json
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from sekuire.compiler import sign_document

__all__ = ["ChatServer", "PolicyBackend", "Recorded", "signed_policy"]


def signed_policy(base: dict[str, Any], seed: bytes, key_id: str = "key_test_1", **changes: Any) -> dict[str, Any]:
    """A copy of ``base`` with envelope ``changes`` (and ``content`` edits via a callable), re-signed."""
    document = copy.deepcopy(base)
    edit = changes.pop("edit_content", None)
    document.update(changes)
    if edit is not None:
        edit(document["content"])
    return sign_document(document, seed, key_id)


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class _Server:
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        with self.lock:
            self.requests.append(Recorded(handler.command, handler.path, dict(handler.headers.items()), body))

    def seen(self, method: str | None = None, path_suffix: str = "") -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if (method is None or r.method == method) and r.path.endswith(path_suffix)]

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # HTTP/1.0: one request per connection, so a stopped server refuses the next request
            # (a kept-alive connection would outlive server.shutdown()).
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def do_GET(self) -> None:  # noqa: N802
                server.record(self, b"")
                server.answer(self, "GET", b"")

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                server.record(self, body)
                server.answer(self, "POST", body)

        return Handler

    def answer(self, handler: http.server.BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        raise NotImplementedError


def _send(
    handler: http.server.BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    cut_after: int | None = None,
) -> None:
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    if status != 304:
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if status != 304:
        handler.wfile.write(body if cut_after is None else body[:cut_after])


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


@dataclass
class PolicyBackend(_Server):
    """A policy backend; set ``policies``/``keys`` (or use the helpers) while it serves."""

    policies: dict[str, bytes] = field(default_factory=dict)
    keys: dict[str, bytes] = field(default_factory=dict)
    agents: dict[str, list[Any]] = field(default_factory=dict)
    etags: bool = True
    #: When set, every GET of a policy answers with this status and no body.
    policy_status: int | None = None
    #: When set, a policy body is cut after this many bytes and the connection closed (Content-Length stays full).
    cut_after: int | None = None
    #: Heartbeats received: (workspace, agent, body).
    heartbeats: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    #: When set, heartbeats are answered with this status (and an error body), or with exactly this body.
    heartbeat_status: int | None = None
    heartbeat_body: bytes | None = None
    next_heartbeat_s: Any = None
    #: Queued tasks per (workspace, agent), and the results posted per task id.
    tasks: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: When set, result posts are answered with this status and not recorded.
    result_status: int | None = None

    def add_task(self, workspace: str, agent: str, task: dict[str, Any]) -> None:
        with self.lock:
            self.tasks.setdefault((workspace, agent), []).append(task)

    def _heartbeat(self, handler: http.server.BaseHTTPRequestHandler, ws: str, agent: str, body: bytes) -> None:
        with self.lock:
            self.heartbeats.append((ws, agent, json.loads(body)))
        if self.heartbeat_status is not None:
            return _send(handler, self.heartbeat_status, b'{"error":"heartbeat refused"}')
        if self.heartbeat_body is not None:
            return _send(handler, 200, self.heartbeat_body)
        document = self.policies.get(ws)
        answer: dict[str, Any] = {"active_policy_hash": json.loads(document)["hash"] if document else None}
        if self.next_heartbeat_s is not None:
            answer["next_heartbeat_s"] = self.next_heartbeat_s
        return _send(handler, 200, _json(answer))

    def _agent_endpoint(self, handler: http.server.BaseHTTPRequestHandler, method: str, parts: list[str], body: bytes) -> bool:
        """The section 10 agent endpoints; False when ``parts`` is none of them."""
        if len(parts) < 6 or parts[:2] != ["v1", "workspaces"] or parts[3] != "agents":
            return False
        ws, agent, rest = parts[2], parts[4], parts[5:]
        if method == "POST" and rest == ["heartbeat"]:
            self._heartbeat(handler, ws, agent, body)
        elif method == "GET" and rest == ["tasks"]:
            with self.lock:
                handed, self.tasks[(ws, agent)] = self.tasks.get((ws, agent), []), []
            _send(handler, 200, _json({"tasks": handed}))
        elif method == "POST" and len(rest) == 3 and rest[0] == "tasks" and rest[2] == "result":
            if self.result_status is not None:
                _send(handler, self.result_status, b'{"error":"results refused"}')
                return True
            with self.lock:
                self.results[rest[1]] = json.loads(body)
            _send(handler, 200, b'{"ok":true}')
        else:
            return False
        return True

    def set_policy(self, document: dict[str, Any] | None = None, workspace: str | None = None, *, body: bytes | None = None) -> None:
        ws = workspace or (document or {}).get("workspace_id") or "ws_abc123"
        self.policies[ws] = body if body is not None else _json(document)

    def set_key(self, key_id: str, public_key_hex: str) -> None:
        self.keys[key_id] = _json({"key_id": key_id, "algorithm": "ed25519", "public_key": public_key_hex})

    def answer(self, handler: http.server.BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        parts = [unquote(p) for p in handler.path.split("?")[0].strip("/").split("/")]
        if method == "GET" and len(parts) == 5 and parts[:2] == ["v1", "workspaces"] and parts[3:] == ["policies", "active"]:
            if self.policy_status is not None:
                return _send(handler, self.policy_status)
            document = self.policies.get(parts[2])
            if document is None:
                return _send(handler, 404, b'{"error":"no active policy"}')
            etag = f'"{hashlib.sha256(document).hexdigest()[:32]}"'
            if self.etags and handler.headers.get("If-None-Match") == etag:
                return _send(handler, 304, headers={"ETag": etag})
            if self.cut_after is not None:
                return _send(handler, 200, document, {"ETag": etag}, cut_after=self.cut_after)
            return _send(handler, 200, document, {"ETag": etag} if self.etags else None)
        if method == "GET" and len(parts) == 3 and parts[:2] == ["v1", "keys"] and parts[2] in self.keys:
            return _send(handler, 200, self.keys[parts[2]])
        if method == "POST" and parts == ["v1", "agents"]:  # a push without a workspace: kept under ""
            with self.lock:
                received = self.agents.setdefault("", [])
                received.append(json.loads(body))
                agent_id = f"agent_{len(received)}"
            return _send(handler, 201, _json({"agent_id": agent_id, "status": "registered"}))
        if method == "POST" and len(parts) == 4 and parts[:2] == ["v1", "workspaces"] and parts[3] == "agents":
            with self.lock:
                received = self.agents.setdefault(parts[2], [])
                received.append(json.loads(body))
                agent_id = f"agent_{len(received)}"
            return _send(handler, 201, _json({"agent_id": agent_id, "status": "registered"}))
        if self._agent_endpoint(handler, method, parts, body):
            return None
        return _send(handler, 404, b'{"error":"not found"}')


@dataclass
class ChatServer(_Server):
    """An OpenAI-compatible ``POST /v1/chat/completions`` that echoes and reports ``usage``."""

    total_tokens: int = 30
    status: int = 200
    #: False: answers carry no ``usage`` (as some compatible servers do).
    report_usage: bool = True
    #: When set, the assistant's answer is this text instead of the echo.
    reply: str | None = None

    def answer(self, handler: http.server.BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        if method != "POST" or not handler.path.endswith("/chat/completions"):
            return _send(handler, 404, b'{"error":"not found"}')
        if self.status != 200:
            return _send(handler, self.status, _json({"error": {"message": "upstream says no", "type": "server_error"}}))
        request = json.loads(body)
        last = request["messages"][-1]["content"]
        prompt = self.total_tokens // 3
        answer: dict[str, Any] = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": 0,
            "model": request["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": self.reply if self.reply is not None else f"echo: {last}"}}],
        }
        if self.report_usage:
            answer["usage"] = {"prompt_tokens": prompt, "completion_tokens": self.total_tokens - prompt,
                               "total_tokens": self.total_tokens}
        return _send(handler, 200, _json(answer))
