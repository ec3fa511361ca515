"""The two engines behind the seam: EmbeddedEngine (regorus) and OPAEngine (a real OPA over REST).

Failure modes are provoked with real things: a stopped OPA, an OPA evaluation
error, and loopback HTTP servers that answer garbage, 503, nothing at all, or
hang up before answering.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import http.server
import io
import json
import sys
import tarfile
import threading
from typing import Any

import httpx
import pytest
from sekuire.compiler import BundleVerificationError
from sekuire.compiler.bundle.signing import BundleSigner
from sekuire.compiler.bundle.tarball import build_bundle
from sekuire.runtime import (
    EmbeddedEngine,
    EngineError,
    EngineResponseError,
    EngineUnavailable,
    OPAEngine,
)
from sekuire.runtime.decision import Decision, DecisionMemo
from sekuire.runtime.engine import rule_ref
from sekuire.runtime.errors import InvalidActionError

from .conftest import VECTORS
from .enforcer_fixtures import write_bundle_dir

RSA = VECTORS / "opa-bundle"
TOOL = {"action": {"type": "tool", "name": "web_search"}, "context": {"agent": "a", "workspace": "ws_abc123"}}
BLOCKED = {"action": {"type": "tool", "name": "file_delete"}, "context": {"agent": "a", "workspace": "ws_abc123"}}


# -- EmbeddedEngine ----------------------------------------------------------------------


def test_embedded_answers_the_decision_and_the_manifest(compiled):
    with EmbeddedEngine.from_compiled(compiled) as engine:
        assert engine.revision == compiled.revision
        assert engine.bundles == {"sekuire-ws_abc123": compiled.revision}  # the name opa-config gives it
        assert engine.evaluate(compiled.decision_path, TOOL)["allow"] is True
        assert [v["rule"] for v in engine.evaluate(compiled.decision_path, BLOCKED)["violations"]] == ["tool.blocked"]
        # The manifest entry point compiles on first use.
        manifest = {"agent": {"name": "bot", "llm": {"provider": "openai", "model": "gpt-4o"}}, "tools": ["web_search"]}
        result = engine.evaluate(compiled.manifest_path, manifest)
        assert set(result) == {"allow", "violations", "warnings", "policy"}


def test_embedded_decisions_are_decoded_once_per_distinct_answer(compiled):
    """decide() reads regorus' answer text and reuses the Decision decoded from an identical text before."""
    path = compiled.decision_path
    with EmbeddedEngine.from_compiled(compiled) as engine:
        allowed = engine.decide(path, TOOL)
        assert allowed == Decision.from_result(engine.evaluate(path, TOOL)) and allowed.allow
        assert engine.decide(path, TOOL) is allowed
        # Another agent, the same answer: the same decision object.
        assert engine.decide(path, {**TOOL, "context": {"agent": "b", "workspace": "ws_abc123"}}) is allowed
        denied = engine.decide(path, BLOCKED)
        assert denied == Decision.from_result(engine.evaluate(path, BLOCKED)) and not denied.allow
        assert [v.rule for v in denied.violations] == ["tool.blocked"]
        with pytest.raises(EngineResponseError, match="not a valid rule path"):
            engine.decide("sekuire/workspaces/no_such_ws/decision", TOOL)
        with pytest.raises(InvalidActionError, match="not JSON"):
            engine.decide(path, {"action": {"type": "tool", "name": float("nan")}})


def test_a_subclass_that_overrides_evaluate_sees_every_decision(compiled):
    seen: list[Any] = []

    class Recording(EmbeddedEngine):
        def evaluate(self, path: str, input: Any) -> dict[str, Any]:  # noqa: A002
            seen.append(input)
            return super().evaluate(path, input)

    with Recording.from_compiled(compiled) as engine:
        assert engine.decide(compiled.decision_path, TOOL).allow and engine.decide(compiled.decision_path, TOOL).allow
    assert seen == [TOOL, TOOL]


def test_the_decision_memo_is_bounded():
    memo: DecisionMemo[int] = DecisionMemo()
    memo.put("x" * (DecisionMemo.MAX_TEXT + 1), 1)
    assert memo.get("x" * (DecisionMemo.MAX_TEXT + 1)) is None  # long answers are not kept
    for index in range(DecisionMemo.MAX_ENTRIES):
        memo.put(str(index), index)
    assert memo.get("0") == 0 and memo.get(b"0") is None
    memo.put("one more", -1)  # full: cleared, then kept
    assert memo.get("0") is None and memo.get("one more") == -1


def test_embedded_is_safe_across_threads(compiled):
    """Eight threads sharing one engine get exactly the single-threaded answers."""
    engine = EmbeddedEngine.from_compiled(compiled)
    inputs = [TOOL, BLOCKED] * 25
    expected = [engine.evaluate(compiled.decision_path, i) for i in inputs]
    results: list[list[dict[str, Any]]] = []
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        results.append([engine.evaluate(compiled.decision_path, i) for i in inputs])

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 8
    engine.close()


def test_closing_never_drops_a_vm_on_another_thread(compiled, monkeypatch):
    """An engine used on several threads, closed on one and collected on another, raises nothing anywhere.

    (The old regorus binding's objects could only be dropped by the thread that made them.)
    """
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    engine = EmbeddedEngine.from_compiled(compiled)
    ready, go = threading.Event(), threading.Event()

    def worker() -> None:
        engine.evaluate(compiled.decision_path, TOOL)
        ready.set()
        go.wait()
        # The next new engine on this thread prunes the VM of the closed one, here, on its own thread.
        with EmbeddedEngine.from_compiled(compiled) as other:
            other.evaluate(compiled.decision_path, TOOL)

    # A thread that exits drops its own VMs as it goes.
    short_lived = threading.Thread(target=engine.evaluate, args=(compiled.decision_path, TOOL))
    short_lived.start()
    short_lived.join()
    thread = threading.Thread(target=worker)
    thread.start()
    ready.wait()
    engine.close()
    with pytest.raises(EngineUnavailable, match="closed"):
        engine.evaluate(compiled.decision_path, TOOL)
    del engine
    gc.collect()
    go.set()
    thread.join()
    gc.collect()
    assert unraisable == []


def test_embedded_undefined_and_off_contract_results():
    modules = {"p.rego": "package p\n\nmaybe := 1 if input.x == 1\n\nflag := true\n\nobj := {\"a\": input.x}\n"}
    with EmbeddedEngine(modules, {}) as engine:
        assert engine.evaluate("p/obj", {"x": 2}) == {"a": 2}
        with pytest.raises(EngineResponseError, match="undefined"):
            engine.evaluate("p/maybe", {"x": 2})
        with pytest.raises(EngineResponseError, match="expected an object, got bool"):
            engine.evaluate("p/flag", {})
        with pytest.raises(EngineResponseError, match="cannot compile"):
            engine.evaluate("p/nothing_here", {})
        for path in ("", "/", "p//obj"):
            with pytest.raises(InvalidActionError):
                engine.evaluate(path, {})
        with pytest.raises(InvalidActionError):
            engine.evaluate("p/obj", {"x": {1, 2}})


def test_embedded_rego_errors_become_engine_errors():
    with pytest.raises(EngineError, match="cannot compile"):
        EmbeddedEngine({"p.rego": "package p\n\nallow if {\n"}, {}, entry_points=["p/allow"])
    modules = {"p.rego": 'package p\n\nresult := {"n": to_number(input.v)}\n'}
    with EmbeddedEngine(modules, {}) as engine:
        assert engine.evaluate("p/result", {"v": "12"}) == {"n": 12}
        with pytest.raises(EngineResponseError):
            engine.evaluate("p/result", {"v": "twelve"})


def test_rule_ref_quotes_every_segment():
    assert rule_ref("sekuire/workspaces/ws-1/decision") == 'data["sekuire"]["workspaces"]["ws-1"]["decision"]'
    modules = {"p.rego": 'package sekuire.workspaces["ws-1"]\n\ndecision := {"allow": input.ok}\n'}
    with EmbeddedEngine(modules, {}) as engine:
        assert engine.evaluate("sekuire/workspaces/ws-1/decision", {"ok": True}) == {"allow": True}


# -- EmbeddedEngine.from_bundle ------------------------------------------------------------


@pytest.fixture()
def signed_bundle(compiled) -> bytes:
    signer = BundleSigner((RSA / "test-rsa-private.pem").read_bytes(), alg="RS256")
    return build_bundle(compiled, signer=signer)


def test_from_signed_bundle(compiled, signed_bundle, tmp_path):
    path = tmp_path / "ws.tar.gz"
    path.write_bytes(signed_bundle)
    public = RSA / "test-rsa-public.pem"
    for source, key in ((signed_bundle, public.read_bytes()), (path, public), (str(path), public.read_text())):
        with EmbeddedEngine.from_bundle(source, verification_key=key) as engine:
            assert engine.revision == compiled.revision and engine.bundles == {"sekuire-ws_abc123": compiled.revision}
            assert [v["rule"] for v in engine.evaluate(compiled.decision_path, BLOCKED)["violations"]] == ["tool.blocked"]


def test_bundle_signed_by_real_opa_loads():
    engine = EmbeddedEngine.from_bundle(RSA / "bundle.tar.gz", verification_key=RSA / "test-rsa-public.pem")
    assert engine.revision == "vec-1" and engine.bundles == {"bundle.tar.gz": "vec-1"}
    engine.close()


def _retar(bundle: bytes, change: dict[str, bytes | None]) -> bytes:
    """The bundle with files replaced (or removed, for None), everything else byte for byte."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(bundle))) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src:
            name = member.name.lstrip("/")
            content = src.extractfile(member).read()  # type: ignore[union-attr]
            if name in change:
                if change[name] is None:
                    continue
                content = change[name]  # type: ignore[assignment]
            member.size = len(content)
            dst.addfile(member, io.BytesIO(content))
    return gzip.compress(out.getvalue())


def test_bundle_verification_fails_closed(compiled, signed_bundle, tmp_path):
    public = (RSA / "test-rsa-public.pem").read_bytes()
    data = json.loads(dict(_files(signed_bundle))["data.json"])
    data["sekuire"]["workspaces"]["ws_abc123"]["policy"]["tools"]["blocked"] = {}
    tampered = _retar(signed_bundle, {"data.json": json.dumps(data).encode()})
    unsigned = _retar(signed_bundle, {".signatures.json": None})
    other_key = tmp_path / "other.pem"
    other_key.write_bytes(_other_public_key())
    cases = [
        (tampered, {"verification_key": public}, "digest mismatch|hash"),
        (unsigned, {"verification_key": public}, "not signed"),
        (unsigned, {}, "not signed"),
        (signed_bundle, {}, "verification_key"),
        (signed_bundle, {"verification_key": other_key}, "signature"),
        (signed_bundle, {"verification_key": tmp_path / "missing.pem"}, "cannot read"),
    ]
    for bundle, kwargs, message in cases:
        with pytest.raises(BundleVerificationError, match=message):
            EmbeddedEngine.from_bundle(bundle, **kwargs)


def test_unsigned_bundle_only_when_allowed(compiled, signed_bundle, caplog):
    unsigned = _retar(signed_bundle, {".signatures.json": None})
    with EmbeddedEngine.from_bundle(unsigned, allow_unsigned=True) as engine:
        assert engine.evaluate(compiled.decision_path, TOOL)["allow"] is True
    assert "unsigned bundle" in caplog.text


def _files(bundle: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(bundle))) as tar:
        return [(m.name.lstrip("/"), tar.extractfile(m).read()) for m in tar if m.isfile()]  # type: ignore[union-attr]


def _other_public_key() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


# -- OPAEngine against a real OPA ------------------------------------------------------------


def test_opa_answers_with_its_bundle_revision(compiled, opa_url):
    with OPAEngine(opa_url) as engine:
        assert engine.revision == "" and engine.bundles == {}
        assert engine.evaluate(compiled.decision_path, TOOL)["allow"] is True
        (name, revision), = engine.bundles.items()
        assert revision == compiled.revision and engine.revision == f"{name}={revision}"
        embedded = EmbeddedEngine.from_compiled(compiled)
        assert engine.evaluate(compiled.decision_path, BLOCKED) == embedded.evaluate(compiled.decision_path, BLOCKED)


def test_opa_undefined_decision(opa_url):
    with OPAEngine(opa_url) as engine:
        with pytest.raises(EngineResponseError, match="undefined"):
            engine.evaluate("sekuire/workspaces/no_such_ws/decision", TOOL)


def test_opa_evaluation_error_body(opa_url):
    """An OPA error body ({"code", "message", "errors"}) names OPA's own reason."""
    module = 'package runtime_test\n\nx := {"v": 1} if input.a\n\nx := {"v": 2} if input.b\n'
    httpx.put(f"{opa_url}/v1/policies/runtime_test", content=module).raise_for_status()
    try:
        with OPAEngine(opa_url) as engine:
            assert engine.evaluate("runtime_test/x", {"a": True}) == {"v": 1}
            with pytest.raises(EngineResponseError, match=r"HTTP 500: internal_error: .*conflicting values"):
                engine.evaluate("runtime_test/x", {"a": True, "b": True})
    finally:
        httpx.delete(f"{opa_url}/v1/policies/runtime_test").raise_for_status()


def test_opa_stopped_mid_run_and_restarted(compiled, opa_server, tmp_path):
    bundle = str(write_bundle_dir(compiled, tmp_path / "bundle"))
    server = opa_server(["--bundle", bundle]).start()
    engine = OPAEngine(server.url, timeout=1.0, retries=1)

    async def aevaluate() -> dict[str, Any]:
        return await engine.aevaluate(compiled.decision_path, TOOL)

    assert engine.evaluate(compiled.decision_path, TOOL)["allow"] and asyncio.run(aevaluate())["allow"]
    server.stop()
    with pytest.raises(EngineUnavailable, match="ConnectError"):
        engine.evaluate(compiled.decision_path, TOOL)
    with pytest.raises(EngineUnavailable, match="ConnectError"):
        asyncio.run(aevaluate())
    opa_server(["--bundle", bundle], port=server.port).start()
    assert engine.evaluate(compiled.decision_path, TOOL)["allow"] and asyncio.run(aevaluate())["allow"]
    engine.close()
    with pytest.raises(EngineUnavailable, match="closed"):
        engine.evaluate(compiled.decision_path, TOOL)


def test_opa_async_clients_per_event_loop(compiled, opa_url):
    engine = OPAEngine(opa_url)

    async def twice() -> list[dict[str, Any]]:
        results = await asyncio.gather(*(engine.aevaluate(compiled.decision_path, i) for i in (TOOL, BLOCKED)))
        return list(results)

    for _ in range(2):  # a new loop each time, as repeated asyncio.run calls do
        allowed, denied = asyncio.run(twice())
        assert allowed["allow"] and not denied["allow"]

    async def close() -> None:
        await engine.aclose()

    asyncio.run(close())
    with pytest.raises(EngineUnavailable, match="closed"):
        asyncio.run(twice())


# -- OPAEngine against servers that misbehave ----------------------------------------------------


class _Scripted(http.server.BaseHTTPRequestHandler):
    """Answers POSTs from a script: (status, content type, body), "hangup" or "hang"."""

    script: list[Any]
    seen: list[dict[str, str]]
    release: threading.Event

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append({"path": self.path, "body": body.decode(), **dict(self.headers)})
        step = type(self).script.pop(0) if len(type(self).script) > 1 else type(self).script[0]
        if step == "hangup":
            self.close_connection = True
            return
        if step == "hang":
            type(self).release.wait(30)
            return
        status, content_type, body = step
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture()
def scripted(http_server, tmp_path):
    """``scripted(*steps)`` -> the URL of a loopback server playing ``steps`` (the last one repeats)."""
    release = threading.Event()

    def start(*steps: Any) -> tuple[str, list[dict[str, str]]]:
        handler = type("Handler", (_Scripted,), {"script": list(steps), "seen": [], "release": release})
        return http_server(tmp_path, handler), handler.seen

    yield start
    release.set()


def _ok(result: Any) -> tuple[int, str, bytes]:
    return 200, "application/json", json.dumps({"result": result}).encode()


def _evaluate(engine: OPAEngine, mode: str, path: str, input: Any) -> dict[str, Any]:  # noqa: A002
    """``engine.evaluate`` (http.client) or ``aevaluate`` (the asyncio client) on a new event loop."""
    if mode == "sync":
        return engine.evaluate(path, input)
    return asyncio.run(engine.aevaluate(path, input))


MODES = pytest.mark.parametrize("mode", ["sync", "async"])


@pytest.mark.parametrize(
    ("step", "error", "message"),
    [
        ((200, "text/html", b"<html>hi</html>"), EngineResponseError, "not a JSON object"),
        ((200, "application/json", b"[1, 2]"), EngineResponseError, "not a JSON object"),
        ((200, "application/json", b"{}"), EngineResponseError, "undefined"),
        (_ok([True]), EngineResponseError, "expected an object, got list"),
        ((503, "text/plain", b"upstream down"), EngineUnavailable, "HTTP 503"),
        ((400, "application/json", b'{"code": "invalid_parameter", "message": "bad\\ninput"}'), EngineResponseError, "invalid_parameter: bad input"),
        ((404, "text/plain", b"not found"), EngineResponseError, "HTTP 404"),
        ((302, "text/plain", b""), EngineResponseError, "HTTP 302: redirects are not followed"),
        ((200, "application/json", b'{"result": "' + b"x" * (9 << 20) + b'"}'), EngineResponseError, "larger than"),
    ],
)
@MODES
def test_opa_bad_answers(scripted, step, error, message, mode):
    url, _ = scripted(step)
    with OPAEngine(url) as engine, pytest.raises(error, match=message) as info:
        _evaluate(engine, mode, "sekuire/workspaces/ws/decision", TOOL)
    assert "\n" not in str(info.value)


@MODES
def test_opa_timeout_is_unavailable(scripted, mode):
    url, _ = scripted("hang")
    with OPAEngine(url, timeout=0.2, retries=3) as engine, pytest.raises(EngineUnavailable, match="no answer within"):
        _evaluate(engine, mode, "sekuire/workspaces/ws/decision", TOOL)


@MODES
def test_opa_retries_connection_failures_only(scripted, mode):
    url, seen = scripted("hangup", _ok({"allow": True}))
    with OPAEngine(url, retries=1) as engine:
        assert _evaluate(engine, mode, "sekuire/workspaces/ws/decision", TOOL) == {"allow": True}
    assert len(seen) == 2
    url, seen = scripted("hangup", _ok({"allow": True}))
    with OPAEngine(url, retries=0) as engine, pytest.raises(EngineUnavailable, match="RemoteDisconnected"):
        _evaluate(engine, mode, "sekuire/workspaces/ws/decision", TOOL)
    url, seen = scripted((503, "text/plain", b"down"), _ok({"allow": True}))
    with OPAEngine(url, retries=3) as engine, pytest.raises(EngineUnavailable):
        _evaluate(engine, mode, "sekuire/workspaces/ws/decision", TOOL)
    assert len(seen) == 1  # an answer, even a bad one, is not retried


@MODES
def test_opa_request_shape(scripted, mode):
    url, seen = scripted(_ok({"allow": True}))
    with OPAEngine(url + "/", headers={"Authorization": "Bearer t0ken"}) as engine:
        _evaluate(engine, mode, "sekuire/workspaces/ws 1/decision", TOOL)
    assert seen[0]["Authorization"] == "Bearer t0ken" and seen[0]["Content-Type"] == "application/json"
    assert json.loads(seen[0]["body"]) == {"input": TOOL}
    # provenance is asked for on every query; path segments are URL-quoted
    assert seen[0]["path"] == "/v1/data/sekuire/workspaces/ws%201/decision?provenance=true"
    with OPAEngine(url) as engine, pytest.raises(InvalidActionError, match="not JSON"):
        _evaluate(engine, mode, "sekuire/workspaces/ws/decision", {"n": float("nan")})
    assert len(seen) == 1


def test_opa_refuses_headers_that_would_split_a_request():
    with pytest.raises(ValueError, match="control character"):
        OPAEngine("http://127.0.0.1:1", headers={"Authorization": "Bearer x\r\nX-Evil: 1"})
    with pytest.raises(ValueError, match="header name"):
        OPAEngine("http://127.0.0.1:1", headers={"Bad Name": "x"})


def test_inputs_beyond_the_vm_instruction_budget_are_answered_like_opa(compiled, opa_url):
    """regorus' VM stops at a fixed instruction budget; the engine finishes such queries in its interpreter."""
    manifest = {
        "agent": {"llm": {"provider": "openai", "model": "gpt-4o"}},
        "tools": ["web_search", *(f"tool_{i}" for i in range(600))],
        "capabilities": {"provides": []},
    }
    deep = {"action": {"type": "filesystem", "path": "/workspace/" + "d/" * 800 + "x.txt", "operation": "read"}}
    with EmbeddedEngine.from_compiled(compiled) as embedded, OPAEngine(opa_url) as opa:
        for path, query in ((compiled.manifest_path, manifest), (compiled.decision_path, deep)):
            answer = embedded.evaluate(path, query)
            assert answer == opa.evaluate(path, query)
        assert len(answer["violations"]) == 0 and answer["allow"] is True
        tools = embedded.evaluate(compiled.manifest_path, manifest)
        assert [v["rule"] for v in tools["violations"]] == ["manifest.tool_not_allowed"] * 600
