"""OpenAIChatClient reads bounded: decoded-size limit, one deadline per call, redirects refused.

Each hostile answer comes from a real ``http.server`` on loopback (stopped by the
``http_server`` fixture), for the sync and the asyncio path.
"""

from __future__ import annotations

import asyncio
import gzip
import http.server
import json
import time
import zlib

import pytest
from sekuire.runtime.llm import LLMError, OpenAIChatClient

API_KEY = "sk-test-bounded-secret"
HELLO = [{"role": "user", "content": "hi"}]
COMPLETION = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}).encode()


def _handler(behaviour):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                behaviour(self)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


def _send(handler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for name, value in {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def _both(client: OpenAIChatClient) -> list[Exception | dict]:
    """The outcome of one sync and one async call."""
    outcomes: list[Exception | dict] = []
    for call in (lambda: client.complete("gpt-4o", HELLO), lambda: asyncio.run(client.acomplete("gpt-4o", HELLO))):
        try:
            outcomes.append(call())
        except LLMError as exc:
            outcomes.append(exc)
    asyncio.run(client.aclose())
    return outcomes


@pytest.fixture()
def serve(http_server, tmp_path):
    return lambda behaviour: http_server(tmp_path, _handler(behaviour))


def test_a_good_answer_still_reads(serve):
    url = serve(lambda h: _send(h, 200, gzip.compress(COMPLETION), {"Content-Encoding": "gzip"}))
    outcomes = _both(OpenAIChatClient(url + "/v1", API_KEY))
    assert outcomes == [json.loads(COMPLETION)] * 2


def test_redirects_are_errors_and_their_body_is_not_parsed(serve):
    url = serve(lambda h: _send(h, 302, COMPLETION, {"Location": "http://127.0.0.1:9/steal"}))
    for outcome in _both(OpenAIChatClient(url + "/v1", API_KEY)):
        assert isinstance(outcome, LLMError) and "HTTP 302: redirects are not followed" in str(outcome)


def test_a_body_above_the_limit_is_refused(serve):
    big = b'{"choices": [], "pad": "' + b"x" * (3 << 20) + b'"}'
    url = serve(lambda h: _send(h, 200, big))
    for outcome in _both(OpenAIChatClient(url + "/v1", API_KEY, max_response_bytes=1 << 20)):
        assert isinstance(outcome, LLMError) and "larger than 1048576 bytes" in str(outcome)


def test_a_body_without_length_above_the_limit_is_cut_off(serve):
    def stream(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()
        for _ in range(64):
            handler.wfile.write(b"x" * 65536)

    url = serve(stream)
    for outcome in _both(OpenAIChatClient(url + "/v1", API_KEY, max_response_bytes=1 << 20)):
        assert isinstance(outcome, LLMError) and "larger than 1048576 bytes" in str(outcome)


def test_a_gzip_bomb_is_stopped_at_the_decoded_limit(serve):
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip, 200 MiB decoded, built 1 MiB at a time
    bomb = packer.compress(b'{"choices": [], "pad": "') + b"".join(packer.compress(b"0" * (1 << 20)) for _ in range(200))
    bomb += packer.compress(b'"}') + packer.flush()
    assert len(bomb) < 1 << 20
    url = serve(lambda h: _send(h, 200, bomb, {"Content-Encoding": "gzip"}))
    for outcome in _both(OpenAIChatClient(url + "/v1", API_KEY, max_response_bytes=1 << 20)):
        assert isinstance(outcome, LLMError) and "larger than 1048576 bytes" in str(outcome)


def test_a_dripping_server_fails_at_the_deadline_not_per_read(serve):
    def drip(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "200")
        handler.end_headers()
        for _ in range(200):  # 200 bytes at one per 0.25 s: 50 s in all, each read well inside the read timeout
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.25)

    url = serve(drip)
    started = time.monotonic()
    outcomes = _both(OpenAIChatClient(url + "/v1", API_KEY, timeout=30.0, deadline=1.0))
    elapsed = time.monotonic() - started
    for outcome in outcomes:
        assert isinstance(outcome, LLMError) and "no complete answer within the 1 s deadline" in str(outcome)
    # Both calls ended long before the drip did (50 s each): the deadline holds the whole call, not one read.
    assert elapsed < 20


def test_a_server_dripping_its_headers_fails_at_the_deadline(serve):
    def drip(handler) -> None:
        handler.wfile.write(b"HTTP/1.0 200 OK\r\n")
        for _ in range(200):  # a header line that never ends, one byte per 0.25 s
            handler.wfile.write(b"X")
            handler.wfile.flush()
            time.sleep(0.25)

    url = serve(drip)
    started = time.monotonic()
    outcomes = _both(OpenAIChatClient(url + "/v1", API_KEY, timeout=30.0, deadline=1.0))
    elapsed = time.monotonic() - started
    for outcome in outcomes:
        assert isinstance(outcome, LLMError) and "no complete answer within the 1 s deadline" in str(outcome)
    assert elapsed < 20


def test_errors_name_no_credentials(serve):
    url = serve(lambda h: _send(h, 500, b'{"error": {"message": "bad\\u001b[2J things"}}'))
    with_userinfo = url.replace("http://", "http://alice:hunter2@") + "/v1"
    client = OpenAIChatClient(with_userinfo, API_KEY)
    for outcome in _both(client):
        text = str(outcome)
        assert isinstance(outcome, LLMError) and "HTTP 500: bad [2J things" in text
        assert "hunter2" not in text and API_KEY not in text and "\x1b" not in text
    assert "hunter2" not in repr(client) and API_KEY not in repr(client)
