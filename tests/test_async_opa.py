"""The asyncio path of OPAEngine (issue 14.6): keep-alive per event loop, chunked bodies, stale connections, deadlines,
TLS, bounds; and decisions equal to the synchronous path's against real OPA.

The protocol cases run against a real HTTP/1.1 server on loopback that
counts its connections and answers as each case needs; the decisions against
``opa run --server``.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sekuire.compiler import load_policy
from sekuire.runtime import OPAEngine, PolicyEnforcer
from sekuire.runtime.errors import EngineResponseError, EngineUnavailable

from .conftest import static_http_server
from .security_support import serve_bundles, signed_bundle
from .test_opa_admin import ACTIONS
from .test_opa_config_services import _pki
from .test_opa_integration import CODING, KEYRING

PATH = "sekuire/workspaces/ws_abc123/decision"
ANSWER = json.dumps({"result": {"allow": True, "violations": [], "policy": {}}}).encode()


class _OPA(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    connections: list[int]
    answer: Callable[[http.server.BaseHTTPRequestHandler], None]

    def setup(self) -> None:
        super().setup()
        self.connections.append(1)

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            self.answer(self)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def _length(handler: http.server.BaseHTTPRequestHandler, body: bytes = ANSWER) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _chunked(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    for piece in (ANSWER[:7], ANSWER[7:20], ANSWER[20:]):
        handler.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    handler.wfile.write(b"0\r\n\r\n")


def _closes_after(handler: http.server.BaseHTTPRequestHandler) -> None:
    """Answers, then drops the connection without saying so (as a server closing idle connections does)."""
    _length(handler)
    handler.wfile.flush()
    handler.close_connection = True


@contextmanager
def _server(answer: Callable, tls: ssl.SSLContext | None = None) -> Iterator[tuple[str, list[int]]]:
    connections: list[int] = []
    handler = type("OPA", (_OPA,), {"connections": connections, "answer": staticmethod(answer)})
    with static_http_server(Path("."), handler, tls=tls) as url:
        yield url, connections


def _run(engine: OPAEngine, times: int, concurrency: int = 1) -> list[dict]:
    async def main() -> list[dict]:
        results = []
        for _ in range(times):
            batch = [engine.aevaluate(PATH, {"action": {"type": "tool", "name": "x"}}) for _ in range(concurrency)]
            results += await asyncio.gather(*batch)
        await engine.aclose()
        return results

    return asyncio.run(main())


def test_one_kept_alive_connection_per_caller():
    with _server(_length) as (url, connections):
        results = _run(OPAEngine(url), times=20)
    assert all(r["allow"] is True for r in results) and len(connections) == 1
    with _server(_length) as (url, connections):
        _run(OPAEngine(url), times=10, concurrency=4)
    assert len(connections) == 4  # four callers at once: four connections, each reused ten times


def test_chunked_answers_are_read_whole():
    with _server(_chunked) as (url, connections):
        assert [r["allow"] for r in _run(OPAEngine(url), times=5)] == [True] * 5
    assert len(connections) == 1


def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_failure():
    with _server(_closes_after) as (url, connections):
        assert [r["allow"] for r in _run(OPAEngine(url, retries=0), times=5)] == [True] * 5
    assert len(connections) == 5


@pytest.mark.parametrize("answer, error, message", [
    (lambda h: _length(h, b'{"result": "' + b"x" * (9 << 20) + b'"}'), EngineResponseError, "larger than"),
    (lambda h: (h.send_response(302), h.send_header("Location", "http://127.0.0.1:1/"), h.send_header("Content-Length", "0"),
                h.end_headers()), EngineResponseError, "redirects are not followed"),
    (lambda h: _length(h, b"not json"), EngineResponseError, "not a JSON object"),
])
def test_bad_answers_are_errors(answer, error, message):
    with _server(answer) as (url, _), pytest.raises(error, match=message):
        _run(OPAEngine(url, retries=0), times=1)


def test_tls_on_loopback(tmp_path):
    pki = _pki(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(pki["server"], pki["server-key"])
    client_tls = ssl.create_default_context(cafile=str(pki["ca"]))
    with _server(_length, tls=server_tls) as (url, connections):
        assert [r["allow"] for r in _run(OPAEngine(url, verify=client_tls), times=3)] == [True] * 3
        with pytest.raises(EngineUnavailable):  # a certificate the default trust store does not know
            _run(OPAEngine(url, retries=0), times=1)
    assert len(connections) >= 1


def test_async_decisions_equal_sync_ones_against_real_opa(opa_bin, tmp_path):
    policy = load_policy(CODING, KEYRING)
    with serve_bundles(opa_bin, {"coding": signed_bundle(policy)}, tmp_path) as opa:
        engine = OPAEngine(opa.url)
        enforcer = PolicyEnforcer(policy, engine=engine, cache=False)

        async def decide() -> list:
            decisions = await asyncio.gather(*(enforcer.acheck(action) for action in ACTIONS * 3))
            await engine.aclose()
            return list(decisions)

        concurrent = asyncio.run(decide())
        with OPAEngine(opa.url) as sync_engine:
            expected = [PolicyEnforcer(policy, engine=sync_engine, cache=False).check(a) for a in ACTIONS * 3]
    assert concurrent == expected and {d.allow for d in expected} == {True, False}
