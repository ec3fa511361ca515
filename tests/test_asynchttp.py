"""The asyncio HTTP/1.1 client of OPAEngine (runtime/asynchttp.py, runtime/httpparse.py) against real servers.

The real OPA on loopback answers large decisions chunked and speaks TLS with a
certificate made here; loopback ``http.server`` servers count connections,
close idle ones, close right after answering, chunk answers with extensions and
trailers, or never answer. The parser is also fed every answer in arbitrary
pieces (hypothesis): the same answer however the bytes arrive.
"""

from __future__ import annotations

import asyncio
import http.client
import http.server
import json
import ssl
import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sekuire.runtime import EngineResponseError, EngineUnavailable, OPAEngine
from sekuire.runtime.httpparse import MAX_HEAD, Response

from .conftest import OPAServer, wait_until
from .enforcer_fixtures import write_bundle_dir
from .hypothesis_profiles import PROPERTY_SETTINGS
from .test_opa_config_services import _pki

PATH = "sekuire/workspaces/ws_abc123/decision"
TOOL = {"action": {"type": "tool", "name": "web_search"}, "context": {"agent": "a", "workspace": "ws_abc123"}}
RESULT = {"allow": True, "violations": []}


def _run(engine: OPAEngine, *inputs: Any, pause: float = 0.0) -> list[dict[str, Any]]:
    """Evaluate ``inputs`` one after the other on one event loop (one pool), then close the pool."""
    async def main() -> list[dict[str, Any]]:
        results = []
        for input_ in inputs:
            results.append(await engine.aevaluate(PATH, input_))
            await asyncio.sleep(pause)
        await engine.aclose()
        return results

    return asyncio.run(main())


class _Server(http.server.BaseHTTPRequestHandler):
    """Answers every POST with RESULT in the way ``mode`` says; records the client port of each request."""

    protocol_version = "HTTP/1.1"  # keep-alive, as OPA
    mode = "plain"
    ports: list[int]

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).ports.append(self.client_address[1])
        body = json.dumps({"result": RESULT}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.mode == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (body[:5], body[5:6], body[6:]):
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
            return
        if self.mode == "interim":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if self.mode == "close-after":  # closes without saying so: the next request meets a closed connection
            self.wfile.flush()
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture()
def server(http_server, tmp_path):
    """``server(mode, idle_timeout=None)`` -> (URL, the client ports of the requests it answered)."""
    def start(mode: str, idle_timeout: float | None = None) -> tuple[str, list[int]]:
        ports: list[int] = []
        handler = type("Handler", (_Server,), {"mode": mode, "ports": ports, "timeout": idle_timeout})
        return http_server(tmp_path, handler), ports

    return start


def test_one_connection_is_kept_alive_for_every_request(server):
    url, ports = server("plain")
    with OPAEngine(url, retries=0) as engine:
        assert _run(engine, *[TOOL] * 6) == [RESULT] * 6
    assert len(ports) == 6 and len(set(ports)) == 1


def test_concurrent_requests_get_connections_of_their_own_and_reuse_them(server):
    url, ports = server("plain")

    async def main(engine: OPAEngine) -> None:
        for _ in range(3):
            assert await asyncio.gather(*(engine.aevaluate(PATH, TOOL) for _ in range(4))) == [RESULT] * 4
        await engine.aclose()

    with OPAEngine(url, retries=0) as engine:
        asyncio.run(main(engine))
    assert len(ports) == 12 and len(set(ports)) <= 4


@pytest.mark.parametrize("mode", ["chunked", "interim"])
def test_chunked_answers_and_interim_answers(server, mode):
    url, ports = server(mode)
    with OPAEngine(url, retries=0) as engine:
        assert _run(engine, TOOL, TOOL, TOOL) == [RESULT] * 3
    assert len(set(ports)) == 1  # a chunked answer read to its end leaves the connection reusable


def test_a_connection_the_server_closed_while_idle_is_never_reused(server):
    url, ports = server("plain", idle_timeout=0.2)  # the server drops connections idle for 0.2 s
    with OPAEngine(url, retries=0) as engine:
        assert _run(engine, TOOL, TOOL, pause=0.6) == [RESULT] * 2
    assert len(set(ports)) == 2


def test_a_server_that_closes_after_each_answer_costs_a_connection_not_a_decision(server):
    """No retries allowed: a kept-alive connection found closed as a request leaves is replaced within the pool."""
    url, ports = server("close-after")
    with OPAEngine(url, retries=0) as engine:
        assert _run(engine, *[TOOL] * 8) == [RESULT] * 8
    assert len(ports) == 8 and len(set(ports)) == 8


def test_the_deadline_bounds_a_server_that_never_answers(http_server, tmp_path):
    release = threading.Event()

    class Silent(_Server):
        def do_POST(self) -> None:  # noqa: N802
            release.wait(30)

    url = http_server(tmp_path, Silent)
    started = time.monotonic()
    try:
        with OPAEngine(url, timeout=0.5, retries=2) as engine, pytest.raises(EngineUnavailable, match="no answer within"):
            _run(engine, TOOL)
    finally:
        release.set()
    assert time.monotonic() - started < 10


def test_large_answers_of_the_real_opa_arrive_chunked_and_read_alike(compiled, opa_url):
    """OPA (Go's net/http) chunks an answer it did not size in advance: a manifest check of 600 tools."""
    manifest = {"agent": {"llm": {"provider": "openai", "model": "gpt-4o"}},
                "tools": [f"tool_{i}" for i in range(600)], "capabilities": {"provides": []}}
    host, port = opa_url.removeprefix("http://").split(":")
    probe = http.client.HTTPConnection(host, int(port), timeout=10)
    probe.request("POST", f"/v1/data/{compiled.manifest_path}", body=json.dumps({"input": manifest}))
    response = probe.getresponse()
    assert response.chunked and response.status == 200  # the framing this test is about
    response.read()
    probe.close()
    with OPAEngine(opa_url, retries=0) as engine:
        expected = engine.evaluate(compiled.manifest_path, manifest)

        async def main() -> list[dict[str, Any]]:
            answers = [await engine.aevaluate(compiled.manifest_path, manifest) for _ in range(3)]
            await engine.aclose()
            return answers

        assert asyncio.run(main()) == [expected] * 3
    assert len(expected["violations"]) == 600


# -- TLS: the real OPA with a certificate made here --------------------------------------------------------------


def test_tls_to_the_real_opa_on_loopback(compiled, opa_bin, tmp_path):
    pki = _pki(tmp_path)  # a CA and a server certificate for 127.0.0.1
    cert, key = pki["server"], pki["server-key"]
    trusted = ssl.create_default_context(cafile=str(pki["ca"]))
    bundle = str(write_bundle_dir(compiled, tmp_path / "bundle"))
    server = OPAServer(opa_bin, ["--bundle", bundle, "--tls-cert-file", str(cert), "--tls-private-key-file", str(key)])
    server.start(wait_healthy=False)
    url = f"https://127.0.0.1:{server.port}"

    def healthy() -> bool:
        probe = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=1, context=trusted)
        try:
            probe.request("GET", "/health")
            return probe.getresponse().status == 200
        except OSError:
            return False
        finally:
            probe.close()

    try:
        assert wait_until(healthy)
        with OPAEngine(url, verify=trusted, retries=0) as engine:
            assert engine.evaluate(compiled.decision_path, TOOL)["allow"] is True
            assert _run_path(engine, compiled.decision_path)["allow"] is True
        with OPAEngine(url, retries=0) as engine:  # the system's CAs do not know this certificate
            for evaluate in (lambda: engine.evaluate(compiled.decision_path, TOOL),
                             lambda: _run_path(engine, compiled.decision_path)):
                with pytest.raises(EngineUnavailable, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
                    evaluate()
        with OPAEngine(url, verify=False, retries=0) as engine:
            assert _run_path(engine, compiled.decision_path)["allow"] is True
    finally:
        server.stop()


def _run_path(engine: OPAEngine, path: str) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        try:
            return await engine.aevaluate(path, TOOL)
        finally:
            await engine.aclose()

    return asyncio.run(main())


# -- the parser, fed bytes as they come ---------------------------------------------------------------------------

_BODY = json.dumps({"result": RESULT}).encode()
ANSWERS = {
    "length": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY),
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\n%s\r\n%x\r\n%s\r\n0\r\nA: b\r\n\r\n"
               % (_BODY[:5], len(_BODY) - 5, _BODY[5:]),
    "interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY),
    "bare-lf": b"HTTP/1.1 200 OK\nContent-Length: %d\n\n%s" % (len(_BODY), _BODY),
    "no-content": b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
    "http10": b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY),
}


def _fail(message: str) -> Exception:
    return EngineResponseError(message)


def _parse(pieces: list[bytes], *, eof: bool = False, limit: int = 1 << 20) -> Response:
    response = Response(limit, _fail)
    done = False
    for piece in pieces:
        done = response.feed(piece)
    if eof and not done:
        done = response.eof()
    assert done
    return response


@PROPERTY_SETTINGS
@given(st.sampled_from(sorted(ANSWERS)), st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_the_same_answer_however_its_bytes_arrive(kind, cuts):
    raw = ANSWERS[kind]
    points = sorted({min(cut, len(raw)) for cut in cuts} | {0, len(raw)})
    response = _parse([raw[a:b] for a, b in zip(points, points[1:], strict=False)] or [raw])
    whole = _parse([raw])
    assert (response.status, bytes(response.body), response.keep_alive) == (whole.status, bytes(whole.body),
                                                                            whole.keep_alive)
    assert whole.status == (204 if kind == "no-content" else 200)
    assert bytes(whole.body) == (b"" if kind == "no-content" else _BODY)
    assert whole.keep_alive is (kind != "http10")


def test_an_answer_framed_by_the_end_of_the_connection():
    response = Response(1 << 20, _fail)
    assert not response.feed(b"HTTP/1.1 200 OK\r\n\r\n" + _BODY)
    assert response.eof() and bytes(response.body) == _BODY and not response.keep_alive


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"HTTP/1.1 2000 OK\r\n\r\n", http.client.BadStatusLine),
        (b"SMTP ready\r\n\r\n", http.client.BadStatusLine),
        (b"HTTP/1.1 101 Switching\r\n\r\n", http.client.BadStatusLine),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", http.client.HTTPException),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", http.client.HTTPException),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", http.client.HTTPException),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", http.client.HTTPException),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", http.client.HTTPException),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * (MAX_HEAD + 1), http.client.LineTooLong),
        (b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\n\r\n", EngineResponseError),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 1\r\n\r\n", EngineResponseError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", EngineResponseError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n", EngineResponseError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1E8481\r\n", EngineResponseError),
    ],
)
def test_malformed_or_refused_answers(raw, error):
    with pytest.raises(error):
        Response(1 << 20, _fail).feed(raw)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", http.client.RemoteDisconnected),
        (b"HTTP/1.1 200 OK\r\nContent-Le", http.client.IncompleteRead),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", http.client.IncompleteRead),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", http.client.IncompleteRead),
    ],
)
def test_a_connection_closed_early(raw, error):
    response = Response(1 << 20, _fail)
    if raw:
        assert not response.feed(raw)
    with pytest.raises(error):
        response.eof()


def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit():
    response = Response(100, _fail)
    assert not response.feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 100)
    with pytest.raises(EngineResponseError, match="larger than 100 bytes"):
        response.feed(b"x")
