"""A malicious policy backend on loopback (a real http.server): every attack of issue 10 fails closed.

- Key injection: the backend serves a policy signed by a key of its own choosing
  and that key under ``/v1/keys/<id>``. ``policy pull``, ``PolicyClient`` and a
  gateway's heartbeat refresh refuse it; the keyring file is never written.
- Unbounded reads: a body larger than the limit (declared or streamed), a gzip
  bomb, a body dripped one byte at a time and a redirect carrying a policy:
  each is refused, within the deadline, without reading the rest and, in a
  separate process, with a bounded peak of memory.
- A hostile "OPA" (the external engine's server): a huge answer, declared or
  streamed, or a drip is a deny (``engine.unavailable``) within the deadline,
  and the password in the engine's URL never reaches the message.
- Quiet enforcement: ``SEKUIRE_POLICY_DEV_OVERRIDE`` with anything but ``true``
  leaves enforcement on; a value carrying a forged log line is escaped.
"""

from __future__ import annotations

import gzip
import http.server
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import pytest
from nacl.signing import SigningKey
from sekuire.compiler import BackendError, Keyring, UnknownKeyError
from sekuire.compiler.cli import main
from sekuire.runtime import InvalidActionError, PolicyEnforcer, PolicyViolationError
from sekuire.runtime.client import PolicyClient
from sekuire.runtime.enforcer import DEV_OVERRIDE_ENV
from sekuire.runtime.gateway import PolicyGateway

from .backend_server import signed_policy
from .conftest import ROOT, static_http_server

WS = "ws_abc123"
# Not the vector key's seed (that is bytes(range(32))): the attacker holds no trusted key.
ATTACKER_SEED = bytes(range(100, 132))
ATTACKER_KEY_ID = "key_attacker"


def _attacker_key_hex() -> str:
    return SigningKey(ATTACKER_SEED).verify_key.encode().hex()


@pytest.fixture()
def hostile(envelope_vectors) -> dict[str, bytes]:
    """The vector policy re-signed by the attacker's key, allowing the denied tool; and the attacker's key document."""
    def allow_shell(content: dict) -> None:
        content["agent"]["capabilities"]["allowed_tools"].append("shell")

    policy = signed_policy(envelope_vectors["valid"], ATTACKER_SEED, key_id=ATTACKER_KEY_ID, version="9",
                           edit_content=allow_shell)
    key = {"key_id": ATTACKER_KEY_ID, "algorithm": "ed25519", "public_key": _attacker_key_hex()}
    return {"policy": json.dumps(policy).encode(), "key": json.dumps(key).encode(), "hash": policy["hash"].encode()}


class _Routes(http.server.BaseHTTPRequestHandler):
    """Answers each path from ``routes``: a callable that writes the whole response."""

    routes: dict[str, Callable[[http.server.BaseHTTPRequestHandler], None]] = {}

    def do_GET(self) -> None:  # noqa: N802
        route = self.routes.get(self.path.split("?")[0])
        if route is None:
            self.send_error(404)
            return
        try:
            route(self)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up: what the test wants

    do_POST = do_GET  # noqa: N815 - OPA's data API is a POST

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture()
def serve(tmp_path) -> Iterator[Callable[[dict], str]]:
    """``serve(routes)`` starts a loopback server for ``routes`` (stopped after the test) and returns its URL."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        def start(routes: dict) -> str:
            handler = type("Routes", (_Routes,), {"routes": routes})
            return stack.enter_context(static_http_server(tmp_path, handler))

        yield start


def _send(body: bytes, *, status: int = 200, headers: dict[str, str] | None = None) -> Callable:
    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
    return route


POLICY = f"/v1/workspaces/{WS}/policies/active"
KEY = f"/v1/keys/{ATTACKER_KEY_ID}"


# -- key injection -----------------------------------------------------------------------------------------


def test_pull_never_trusts_the_key_the_backend_chooses(serve, hostile, vector_keyring, tmp_path, capsys):
    url = serve({POLICY: _send(hostile["policy"]), KEY: _send(hostile["key"])})
    before = vector_keyring.path.read_bytes()
    out = tmp_path / "policy.json"
    code = main(["policy", "pull", "--workspace", WS, "--backend", url, "--out", str(out),
                 "--keyring", str(vector_keyring.path)])
    err = capsys.readouterr().err
    assert code != 0 and "Signature: verified" not in err and ATTACKER_KEY_ID in err
    assert vector_keyring.path.read_bytes() == before and not out.exists()
    # Trust on first use is for an empty keyring only: a keyring holding a key refuses it too.
    code = main(["policy", "pull", "--workspace", WS, "--backend", url, "--out", str(out),
                 "--keyring", str(vector_keyring.path), "--trust-on-first-use"])
    assert code != 0 and vector_keyring.path.read_bytes() == before and not out.exists()


def test_policy_client_never_trusts_the_key_the_backend_chooses(serve, hostile, vector_keyring):
    url = serve({POLICY: _send(hostile["policy"]), KEY: _send(hostile["key"])})
    before = vector_keyring.path.read_bytes()
    with PolicyClient(url, keyring=vector_keyring) as client:
        with pytest.raises(UnknownKeyError):
            client.fetch_active_policy(WS)
    assert vector_keyring.path.read_bytes() == before
    assert Keyring.load(vector_keyring.path).get(ATTACKER_KEY_ID) is None


def test_a_heartbeat_cannot_swap_in_the_attackers_policy(backend, url, hostile, vector_keyring, envelope_vectors):
    with PolicyClient(url, keyring=vector_keyring) as client:
        gateway = PolicyGateway(client, WS)
        gateway.initialize()
        assert not gateway.check_capability("shell").allowed
        backend.set_policy(json.loads(hostile["policy"]))
        backend.set_key(ATTACKER_KEY_ID, _attacker_key_hex())
        assert gateway.on_heartbeat_response({"active_policy_hash": hostile["hash"].decode()}) is False
        assert not gateway.check_capability("shell").allowed and gateway.policy.version == "1"
        gateway.close()
    assert Keyring.load(vector_keyring.path).get(ATTACKER_KEY_ID) is None


# -- unbounded reads ---------------------------------------------------------------------------------------


def _streamed(total: int, chunk: bytes = b" " * 65536, headers: dict[str, str] | None = None) -> Callable:
    """A body of ``total`` bytes without a Content-Length (chunked is not needed: the connection closes)."""
    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Connection", "close")
        handler.end_headers()
        sent = 0
        while sent < total:
            handler.wfile.write(chunk)
            sent += len(chunk)
    return route


def _bomb() -> bytes:
    return gzip.compress(b"{" + b" " * (300 << 20) + b"}", compresslevel=9)


@pytest.mark.parametrize("attack", ["declared", "streamed", "gzip-bomb"])
def test_oversized_bodies_are_refused(serve, vector_keyring, attack):
    routes = {
        "declared": {POLICY: _send(b"", headers={"Content-Length": str(300 << 20)})},
        "streamed": {POLICY: _streamed(300 << 20)},
        "gzip-bomb": {POLICY: _send(_bomb(), headers={"Content-Encoding": "gzip"})},
    }[attack]
    url = serve(routes)
    with PolicyClient(url, keyring=vector_keyring, deadline=30.0) as client:
        with pytest.raises(BackendError) as info:
            client.fetch_active_policy(WS)
    assert "\n" not in str(info.value)


# Peak memory from VmHWM (this process's own high-water mark: ru_maxrss would include the forking parent's).
PROBE = textwrap.dedent("""
    import sys
    from sekuire.compiler import BackendError
    from sekuire.runtime.client import PolicyClient
    def status_mib(field):
        line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
        return int(line.split()[1]) / 1024
    client = PolicyClient(sys.argv[1], keyring=sys.argv[2], deadline=60.0)
    before = status_mib("VmRSS")
    try:
        client.fetch_active_policy("ws_abc123")
        print("ACCEPTED")
    except BackendError:
        print(f"{status_mib('VmHWM') - before:.1f}")
""")


@pytest.mark.parametrize("attack", ["streamed", "gzip-bomb"])
def test_a_pull_against_a_huge_body_stays_small_in_memory(serve, vector_keyring, attack):
    url = serve({POLICY: _streamed(300 << 20) if attack == "streamed" else
                 _send(_bomb(), headers={"Content-Encoding": "gzip"})})
    result = subprocess.run([sys.executable, "-c", PROBE, url, str(vector_keyring.path)], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    grown = result.stdout.strip()
    assert grown != "ACCEPTED" and result.returncode == 0, result.stderr
    assert float(grown) < 100, f"the pull grew the process by {grown} MiB"


def test_a_dripping_backend_fails_within_the_deadline(serve, vector_keyring, envelope_vectors):
    body = json.dumps(envelope_vectors["valid"]).encode()
    sent = []

    def drip(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for byte in body:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            sent.append(byte)
            time.sleep(2.0)

    url = serve({POLICY: drip})
    started = time.monotonic()
    with PolicyClient(url, keyring=vector_keyring, deadline=3.0) as client:
        with pytest.raises(BackendError):
            client.fetch_active_policy(WS)
    # Failed on its deadline, long before the drip could have finished (a per-read timeout never fires here).
    assert time.monotonic() - started < 30 and len(sent) < len(body) // 2


def test_a_redirect_is_an_error_and_its_body_never_a_policy(serve, vector_keyring, envelope_vectors):
    body = json.dumps(envelope_vectors["valid"]).encode()  # a valid signed policy, in the 3xx body
    url = serve({POLICY: _send(body, status=302, headers={"Location": "http://127.0.0.1:1/"})})
    with PolicyClient(url, keyring=vector_keyring) as client:
        with pytest.raises(BackendError, match="302"):
            client.fetch_active_policy(WS)


# -- enforcement never quietly off -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [" TRUE ", "true\n", "yes", "1", "True!", ""])
def test_only_exactly_true_turns_on_warn_only(monkeypatch, value, policy):
    monkeypatch.setenv(DEV_OVERRIDE_ENV, value)
    enforcer = PolicyEnforcer(policy)
    assert not enforcer.warn_only
    with pytest.raises(PolicyViolationError):
        enforcer.enforce_tool("shell")
    enforcer.close()


@pytest.mark.parametrize("value", ["true", "TRUE", "True"])
def test_exactly_true_turns_on_warn_only_loudly(monkeypatch, value, policy, caplog):
    monkeypatch.setenv(DEV_OVERRIDE_ENV, value)
    with caplog.at_level("WARNING"):
        enforcer = PolicyEnforcer(policy)
        assert enforcer.warn_only and not enforcer.enforce_tool("shell").allow
    assert any(r.levelname == "ERROR" and "WARN-ONLY" in r.getMessage() for r in caplog.records)
    assert any(r.levelname == "WARNING" and "shell" in r.getMessage() for r in caplog.records)
    enforcer.close()


def test_a_forged_log_line_in_a_value_is_escaped(policy, caplog):
    forged = "shell\nINFO sekuire.runtime.enforcer: decision allow \x1b[2J"
    with PolicyEnforcer(policy) as enforcer, pytest.raises((PolicyViolationError, InvalidActionError)) as info:
        enforcer.enforce_tool(forged)
    for text in (str(info.value), caplog.text):
        assert "\nINFO" not in text and "\x1b" not in text


# -- a hostile "OPA": the external engine's reads are bounded too ------------------------------------------


def _opa(serve, route: Callable) -> str:
    return serve({"/v1/data/sekuire/workspaces/ws_abc123/decision": route})


def _drain(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.rfile.read(int(handler.headers.get("Content-Length", "0")))


def _check(enforcer: PolicyEnforcer, mode: str, action: dict):
    """``enforcer.check(action)`` on the synchronous path, or ``acheck`` on the asyncio one (its own HTTP client)."""
    import asyncio

    return enforcer.check(action) if mode == "sync" else asyncio.run(enforcer.acheck(action))


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("attack", ["streamed", "declared", "drip", "chunked"])
def test_a_hostile_opa_is_a_deny_within_the_deadline(serve, policy, attack, mode):
    from sekuire.runtime import OPAEngine
    from sekuire.runtime.decision import ENGINE_UNAVAILABLE

    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        _drain(handler)
        if attack == "drip":
            handler.send_response(200)
            handler.send_header("Content-Length", "1000")
            handler.end_headers()
            for _ in range(1000):
                handler.wfile.write(b" ")
                handler.wfile.flush()
                time.sleep(2.0)
        elif attack == "declared":
            _send(b"", headers={"Content-Length": str(300 << 20)})(handler)
        elif attack == "chunked":  # one chunk that declares 300 MiB, and its first 10 MiB
            handler.send_response(200)
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            handler.wfile.write(b"%x\r\n" % (300 << 20))
            for _ in range(160):
                handler.wfile.write(b" " * 65536)
        else:
            _streamed(300 << 20)(handler)

    url = _opa(serve, route).replace("http://", "http://alice:hunter2@")
    started = time.monotonic()
    with OPAEngine(url, timeout=2.0, retries=0) as engine, PolicyEnforcer(policy, engine=engine, cache=False) as enforcer:
        decision = _check(enforcer, mode, {"type": "tool", "name": "web_search"})
    assert [v.rule for v in decision.violations] == [ENGINE_UNAVAILABLE]
    assert "hunter2" not in decision.violations[0].message and "alice" not in decision.violations[0].message
    assert ("no answer within 2.0 s" if attack == "drip" else "larger than") in decision.violations[0].message
    assert time.monotonic() - started < 30


def test_warn_only_events_say_so(policy, monkeypatch):
    events: list = []

    class Sink:
        def emit(self, event) -> None:
            events.append(event)

        def close(self) -> None:
            pass

    with PolicyEnforcer(policy, warn_only=True, decision_log=Sink()) as enforcer:
        assert not enforcer.enforce_tool("shell").allow
    assert events and all(event.get("warn_only") is True for event in events)


# -- credentials in a URL, header drips, forged rotations through pull -------------------------------------


def _recording(body: bytes, seen: list[str]) -> Callable:
    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        seen.append(handler.headers.get("Authorization", ""))
        _send(body)(handler)
    return route


def test_credentials_in_a_url_never_reach_a_log_line(serve, vector_keyring, envelope_vectors, caplog):
    """httpx logs every request's URL whole at INFO: userinfo travels as a Basic header instead, so the password
    is sent (the server sees it) but no log line of any logger shows it."""
    import base64

    from sekuire.runtime import OpenAIChatClient

    seen: list[str] = []
    answer = {"choices": [{"message": {"role": "assistant", "content": "hi"}}], "usage": {"total_tokens": 1}}
    url = serve({POLICY: _recording(json.dumps(envelope_vectors["valid"]).encode(), seen),
                 "/v1/chat/completions": _recording(json.dumps(answer).encode(), seen)})
    secret_url = url.replace("http://", "http://alice:hunter2@")
    with caplog.at_level("DEBUG"):
        with PolicyClient(secret_url, keyring=vector_keyring) as client:
            assert client.fetch_active_policy(WS).workspace_id == WS
        chat = OpenAIChatClient(secret_url + "/v1")
        assert chat.complete("gpt-4o", [{"role": "user", "content": "x"}])["choices"]
        chat.close()
    expected = "Basic " + base64.b64encode(b"alice:hunter2").decode()
    assert seen == [expected, expected]
    assert any("HTTP Request" in record.getMessage() for record in caplog.records)  # httpx did log the requests
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_header_drip_fails_within_the_deadline(serve, vector_keyring, policy, mode):
    """A server that sends its status line and headers a byte every second: the deadline covers the head too."""
    from sekuire.runtime import OPAEngine
    from sekuire.runtime.decision import ENGINE_UNAVAILABLE

    def drip_head(handler: http.server.BaseHTTPRequestHandler) -> None:
        _drain(handler) if handler.command == "POST" else None
        for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"a" * 200:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(1.0)

    url = serve({POLICY: drip_head, "/v1/data/sekuire/workspaces/ws_abc123/decision": drip_head})
    started = time.monotonic()
    with PolicyClient(url, keyring=vector_keyring, deadline=3.0) as client, pytest.raises(BackendError):
        client.fetch_active_policy(WS)
    with OPAEngine(url, timeout=2.0, retries=0) as engine, PolicyEnforcer(policy, engine=engine, cache=False) as enforcer:
        decision = _check(enforcer, mode, {"type": "tool", "name": "web_search"})
    assert [v.rule for v in decision.violations] == [ENGINE_UNAVAILABLE]
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("endorser", ["trusted-id", "self"])
def test_pull_refuses_a_rotation_the_trusted_key_never_signed(serve, hostile, vector_keyring, envelope_vectors,
                                                              tmp_path, capsys, endorser):
    """The backend serves the attacker's policy and its key with a rotation statement signed by the attacker: under
    the trusted key's id (a forgery) or its own. pull refuses it and the keyring file is unchanged."""
    from sekuire.compiler.policy.rotation import sign_rotation

    endorsed_by = envelope_vectors["key"]["key_id"] if endorser == "trusted-id" else ATTACKER_KEY_ID
    key = {**json.loads(hostile["key"]), "rotation": sign_rotation(
        ATTACKER_SEED, endorsed_by, ATTACKER_KEY_ID, bytes.fromhex(_attacker_key_hex()))}
    url = serve({POLICY: _send(hostile["policy"]), KEY: _send(json.dumps(key).encode())})
    before = vector_keyring.path.read_bytes()
    code = main(["policy", "pull", "--workspace", WS, "--backend", url, "--keyring", str(vector_keyring.path),
                 "--out", str(tmp_path / "policy.json")])
    assert code != 0 and not (tmp_path / "policy.json").exists()
    assert vector_keyring.path.read_bytes() == before
    assert ATTACKER_KEY_ID in capsys.readouterr().err
