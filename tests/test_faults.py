"""Faults, with real processes on loopback: every one fails closed or keeps the last verified policy.

- The real OPA killed with SIGKILL (alone, and under eight threads of
  decisions) and restarted on the same port: while it is down every decision is
  an ``engine.unavailable`` deny that consumes no quota; afterwards the same
  enforcer answers correctly again.
- A misbehaving "OPA" (:class:`Misbehaving`): too slow for the timeout, 500,
  non-JSON, a cut body, a redirect, answers off the decision contract. Each is a
  deny, through ``enforce_*`` (raising), ``check`` and the async twins.
- A misbehaving backend during ``sekuire policy pull`` (the file on disk stays
  byte for byte what it was, no temporary file is left) and during a heartbeat
  refresh of a :class:`PolicyGateway` (it keeps enforcing the last verified
  policy, and takes the new one once the backend recovers).
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import json
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from sekuire.compiler import Policy
from sekuire.compiler.cli import main
from sekuire.runtime import OPAEngine, PolicyEnforcer, PolicyViolationError, RateLimiter
from sekuire.runtime.client import AsyncPolicyClient, PolicyClient
from sekuire.runtime.decision import ENGINE_UNAVAILABLE
from sekuire.runtime.gateway import PolicyGateway

from .conftest import free_port, wait_until
from .security_support import load_example, serve_bundles, signed_bundle

WS = "ws_abc123"
ALLOWED, DENIED = "web_search", "shell"  # under coding-assistant (and the vector policy)


# -- a server that misbehaves on request -------------------------------------------------------------------


@dataclass
class Misbehaving:
    """A loopback HTTP server answering every GET and POST the way ``mode`` says.

    ``ok`` serves ``body``; ``slow`` never answers (until the test ends); ``500``,
    ``html``, ``empty``, ``truncated`` (a Content-Length larger than what is sent,
    then the connection closed), ``redirect`` (to ``redirect_to``), and ``raw``
    (``raw_body`` as JSON with status 200).
    """

    mode: str = "ok"
    url: str = ""
    body: bytes = b""
    raw_body: bytes = b""
    redirect_to: str = ""
    requests: Counter[str] = field(default_factory=Counter)
    release: threading.Event = field(default_factory=threading.Event)

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # noqa: N802
                server.answer(self)

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.answer(self)

        return Handler

    def answer(self, request: http.server.BaseHTTPRequestHandler) -> None:
        self.requests[self.mode] += 1
        if self.mode == "slow":
            self.release.wait(30)
            return
        status, body, headers = {
            "ok": (200, self.body, {"ETag": f'"{hashlib.sha256(self.body).hexdigest()[:16]}"'}),
            "500": (500, b"internal error", {}),
            "html": (200, b"<html><body>maintenance</body></html>", {}),
            "empty": (200, b"", {}),
            "truncated": (200, self.body, {}),
            "redirect": (302, b"", {"Location": self.redirect_to}),
            "raw": (200, self.raw_body, {}),
        }[self.mode]
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body[: len(body) // 2] if self.mode == "truncated" else body)


@pytest.fixture()
def misbehaving(http_server, tmp_path) -> Iterator[Misbehaving]:
    """A :class:`Misbehaving` server on loopback, stopped (and any slow answer released) after the test."""
    server = Misbehaving()
    server.url = http_server(tmp_path, server.handler())
    yield server
    server.release.set()


def _denied_for_no_decision(call: Any) -> str:
    """Run an enforce_* call that must fail closed; return the deny's message."""
    with pytest.raises(PolicyViolationError) as info:
        call()
    assert info.value.rule == ENGINE_UNAVAILABLE and "\n" not in str(info.value)
    return info.value.reason


# -- the real OPA, killed and restarted ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def coding() -> Policy:
    return load_example("coding-assistant")


@pytest.fixture(scope="module")
def coding_bundle(coding) -> bytes:
    return signed_bundle(coding)


def test_opa_killed_then_restarted_on_the_same_port(opa_bin, tmp_path, coding, coding_bundle):
    seen: list[tuple[str, str]] = []
    with serve_bundles(opa_bin, {"coding": coding_bundle}, tmp_path / "a") as opa:
        engine = OPAEngine(opa.url, timeout=2.0, retries=1)
        limiter = RateLimiter()
        enforcer = PolicyEnforcer(coding, engine=engine, cache=False, rate_limiter=limiter,
                                  on_violation=lambda rule, reason: seen.append((rule, reason)))
        assert enforcer.enforce_tool(ALLOWED).allow
        assert enforcer.enforce_rate_limit("request", 10).allow
        opa.proc.kill()  # SIGKILL: no goodbye on the pooled keep-alive connection
        opa.proc.wait(timeout=30)

        assert "ConnectError" in _denied_for_no_decision(lambda: enforcer.enforce_tool(ALLOWED))
        assert [v.rule for v in enforcer.check({"type": "tool", "name": ALLOWED}).violations] == [ENGINE_UNAVAILABLE]
        _denied_for_no_decision(lambda: asyncio.run(enforcer.aenforce_network("api.openai.com")))
        _denied_for_no_decision(lambda: enforcer.enforce_rate_limit("request", 1))
        assert limiter.usage((coding.workspace_id, "default", "request")) == {"minute": 10, "hour": 10}
        assert seen and {rule for rule, _ in seen} == {ENGINE_UNAVAILABLE}

        with serve_bundles(opa_bin, {"coding": coding_bundle}, tmp_path / "b", port=opa.port):
            # The same engine and pool: the dead connections are replaced, the decisions are right again.
            assert enforcer.enforce_tool(ALLOWED).allow
            assert enforcer.check({"type": "tool", "name": DENIED}).violations[0].rule == "tool.not_allowed"
            assert asyncio.run(enforcer.aenforce_network("api.openai.com")).allow
            assert enforcer.enforce_rate_limit("request", 1).allow
    engine.close()


def test_opa_killed_under_eight_threads_of_decisions(opa_bin, tmp_path, coding, coding_bundle):
    """Every answer while OPA dies and comes back is the right decision or an engine.unavailable deny."""
    actions = [({"type": "tool", "name": ALLOWED}, []), ({"type": "tool", "name": DENIED}, ["tool.not_allowed"]),
               ({"type": "network", "host": "evil.anthropic.com"}, ["network.blocked"]),
               ({"type": "filesystem", "path": "/workspace/notes.md"}, [])]
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    phase = ["up"]

    with serve_bundles(opa_bin, {"coding": coding_bundle}, tmp_path / "a") as opa:
        engine = OPAEngine(opa.url, timeout=2.0, retries=1)
        enforcer = PolicyEnforcer(coding, engine=engine, cache=False)

        def worker(seed: int) -> None:
            index = seed
            while not stop.is_set():
                action, rules = actions[index % len(actions)]
                index += 1
                got = [v.rule for v in enforcer.check(action).violations]
                assert got in (rules, [ENGINE_UNAVAILABLE]), (action, got)
                with lock:
                    outcomes[f"{phase[0]}:{'failed' if got == [ENGINE_UNAVAILABLE] else 'decided'}"] += 1

        def count(key: str) -> int:
            with lock:
                return outcomes[key]

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(worker, seed) for seed in range(8)]
            try:
                assert wait_until(lambda: count("up:decided") >= 200)
                phase[0] = "down"
                opa.proc.kill()
                opa.proc.wait(timeout=30)
                assert wait_until(lambda: count("down:failed") >= 50)
                with serve_bundles(opa_bin, {"coding": coding_bundle}, tmp_path / "b", port=opa.port):
                    phase[0] = "back"
                    assert wait_until(lambda: count("back:decided") >= 200)
            finally:
                stop.set()
            for future in futures:
                future.result()  # a wrong decision in a worker fails here
        engine.close()
    assert outcomes["up:failed"] == 0


# -- a misbehaving OPA -------------------------------------------------------------------------------------

_ALLOW_ALL = {"allow": True, "violations": [], "policy": {}}

OPA_FAULTS = [
    ("slow", None, "no answer within"),
    ("500", None, "HTTP 500"),
    ("html", None, "not a JSON object"),
    ("empty", None, "not a JSON object"),
    ("truncated", None, "IncompleteRead"),  # the synchronous path reads with http.client
    ("redirect", None, "HTTP 302"),
    ("raw", {"result": {"allow": True}}, "lacks a boolean 'allow' or a 'violations' array"),
    ("raw", {"result": {"allow": "true", "violations": []}}, "lacks a boolean 'allow'"),
    ("raw", {"result": {"allow": True, "violations": [{"rule": "x", "message": "y"}]}}, "allow=True with 1 violation"),
    ("raw", {"result": {"allow": True, "violations": [{"rule": 1}]}}, "lacks a string 'rule'"),
    ("raw", {"result": [_ALLOW_ALL]}, "expected an object, got list"),
    ("raw", {"decision": _ALLOW_ALL}, "undefined"),
    ("raw", {"code": "internal_error", "message": "eval_conflict_error"}, "internal_error"),
]


@pytest.mark.parametrize(("mode", "raw", "message"), OPA_FAULTS,
                         ids=[f"{mode}-{index}" for index, (mode, _, _) in enumerate(OPA_FAULTS)])
def test_a_misbehaving_opa_is_a_deny_everywhere(misbehaving, http_server, tmp_path, coding, mode, raw, message):
    allow_all = Misbehaving(mode="raw", raw_body=json.dumps({"result": _ALLOW_ALL}).encode())
    misbehaving.mode = mode
    misbehaving.body = json.dumps({"result": _ALLOW_ALL}).encode()  # "truncated" cuts an allow in half
    misbehaving.raw_body = json.dumps(raw).encode()
    misbehaving.redirect_to = http_server(tmp_path / "elsewhere", allow_all.handler()) + "/v1/data/x"
    limiter = RateLimiter()
    with OPAEngine(misbehaving.url, timeout=0.3, retries=1) as engine:
        enforcer = PolicyEnforcer(coding, engine=engine, cache=False, rate_limiter=limiter)
        assert message in _denied_for_no_decision(lambda: enforcer.enforce_tool(ALLOWED))
        _denied_for_no_decision(lambda: enforcer.enforce_rate_limit("token", 5))
        _denied_for_no_decision(lambda: asyncio.run(enforcer.aenforce_model("gpt-4o")))
        assert not enforcer.check({"type": "api", "name": "openai"}).allow
    assert limiter.usage((coding.workspace_id, "default", "token")) == {"minute": 0, "hour": 0}
    assert allow_all.requests["raw"] == 0  # a redirect is never followed


# -- a misbehaving backend: pull and heartbeat refresh ----------------------------------------------------------

BACKEND_FAULTS = ["down", "slow", "500", "html", "empty", "truncated", "redirect"]


def _point_at(server: Misbehaving, mode: str) -> str:
    """The URL the client should use for ``mode``: a closed port for "down"."""
    server.mode = "ok" if mode == "down" else mode
    server.redirect_to = "http://127.0.0.1:1/"
    return f"http://127.0.0.1:{free_port()}" if mode == "down" else server.url


@pytest.mark.parametrize("mode", BACKEND_FAULTS)
def test_pull_leaves_the_file_on_disk_as_it_was(misbehaving, tmp_path, capsys, monkeypatch, documents,
                                               vector_keyring, mode):
    import httpx

    monkeypatch.setattr("sekuire.compiler.policy.backend.DEFAULT_TIMEOUT", httpx.Timeout(0.5))
    work = tmp_path / "work"
    work.mkdir()
    out = work / "policy.json"
    out.write_bytes(documents["v1"])
    keyring_before = vector_keyring.path.read_bytes()
    misbehaving.body = documents["v2"]
    url = _point_at(misbehaving, mode)

    code = main(["policy", "pull", "--workspace", WS, "--backend", url, "--out", str(out),
                 "--keyring", str(vector_keyring.path)])
    captured = capsys.readouterr()
    assert code != 0 and captured.out == "" and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err
    assert out.read_bytes() == documents["v1"] and sorted(p.name for p in work.iterdir()) == ["policy.json"]
    assert vector_keyring.path.read_bytes() == keyring_before

    misbehaving.mode = "ok"  # the backend recovers: the next pull replaces the file whole
    assert main(["policy", "pull", "--workspace", WS, "--backend", misbehaving.url, "--out", str(out),
                 "--keyring", str(vector_keyring.path)]) == 0
    assert out.read_bytes() == documents["v2"]


@pytest.mark.parametrize("mode", BACKEND_FAULTS)
def test_a_heartbeat_refresh_that_fails_keeps_the_last_verified_policy(misbehaving, documents, vector_keyring,
                                                                      caplog, mode):
    misbehaving.body = documents["v1"]
    v2_hash = json.loads(documents["v2"])["hash"]
    with PolicyClient(misbehaving.url, keyring=vector_keyring, timeout=0.5) as client:
        gateway = PolicyGateway(client, WS)
        gateway.initialize()
        assert not gateway.check_capability(DENIED).allowed

        misbehaving.body = documents["v2"]
        client.backend = _point_at(misbehaving, mode)
        assert gateway.on_heartbeat_response({"active_policy_hash": v2_hash}) is False
        assert gateway.policy.version == "1" and not gateway.check_capability(DENIED).allowed
        assert gateway.check_capability(ALLOWED).allowed
        assert "policy refresh failed, keeping policy policy_xyz v1" in caplog.text

        client.backend = misbehaving.url
        misbehaving.mode = "ok"
        assert gateway.on_heartbeat_response({"active_policy_hash": v2_hash}) is True
        assert gateway.policy.version == "2" and gateway.check_capability(DENIED).allowed
        gateway.close()


@pytest.mark.parametrize("mode", ["slow", "truncated", "html"])
def test_an_async_heartbeat_refresh_that_fails_keeps_the_last_verified_policy(misbehaving, documents, vector_keyring,
                                                                            mode):
    misbehaving.body = documents["v1"]
    v2_hash = json.loads(documents["v2"])["hash"]

    async def scenario() -> None:
        async with AsyncPolicyClient(misbehaving.url, keyring=vector_keyring, timeout=0.5) as client:
            gateway = PolicyGateway(client, WS)
            await gateway.ainitialize()
            misbehaving.body, misbehaving.mode = documents["v2"], mode
            assert await gateway.aon_heartbeat_response({"active_policy_hash": v2_hash}) is False
            assert gateway.policy.version == "1"
            assert not (await gateway.acheck_capability(DENIED)).allowed
            misbehaving.mode = "ok"
            assert await gateway.aon_heartbeat_response({"active_policy_hash": v2_hash}) is True
            assert (await gateway.acheck_capability(DENIED)).allowed
            gateway.close()

    asyncio.run(scenario())
