"""Faults of real processes: OPA paused (SIGSTOP) and resumed during decisions, a backend process killed mid-response.

Each fails closed or keeps the last verified policy: a paused OPA costs each
decision at most the engine's deadline and is an ``engine.unavailable`` deny
that consumes no quota; once resumed, the same enforcer decides correctly. A
backend SIGKILLed inside its answer leaves ``policy pull``'s file as it was and
a gateway on its last verified policy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sekuire.compiler import Policy
from sekuire.compiler.cli import main
from sekuire.runtime import OPAEngine, PolicyEnforcer, PolicyViolationError, RateLimiter
from sekuire.runtime.client import PolicyClient
from sekuire.runtime.decision import ENGINE_UNAVAILABLE
from sekuire.runtime.gateway import PolicyGateway

from .conftest import ROOT, free_port
from .security_support import load_example, serve_bundles, signed_bundle

WS = "ws_abc123"
ALLOWED, DENIED = "web_search", "shell"


@pytest.fixture(scope="module")
def coding() -> Policy:
    return load_example("coding-assistant")


def test_opa_paused_and_resumed_during_decisions(opa_bin, tmp_path, coding):
    limiter = RateLimiter()
    with serve_bundles(opa_bin, {"coding": signed_bundle(coding)}, tmp_path) as opa:
        assert opa.proc is not None
        engine = OPAEngine(opa.url, timeout=1.0, retries=0)
        enforcer = PolicyEnforcer(coding, engine=engine, cache=False, rate_limiter=limiter)
        assert enforcer.enforce_tool(ALLOWED).allow
        os.kill(opa.proc.pid, signal.SIGSTOP)
        try:
            # Eight threads at once against a process that accepts connections but never answers.
            with ThreadPoolExecutor(8) as pool:
                outcomes = list(pool.map(lambda _: enforcer.check({"type": "tool", "name": ALLOWED}), range(16)))
            assert {tuple(v.rule for v in d.violations) for d in outcomes} == {(ENGINE_UNAVAILABLE,)}
            with pytest.raises(PolicyViolationError) as info:
                enforcer.enforce_rate_limit("request", 5)
            assert info.value.rule == ENGINE_UNAVAILABLE
            assert limiter.usage((coding.workspace_id, "default", "request")) == {"minute": 0, "hour": 0}
        finally:
            os.kill(opa.proc.pid, signal.SIGCONT)
        # Resumed: the same engine and enforcer decide correctly again, both ways.
        assert enforcer.enforce_tool(ALLOWED).allow
        assert enforcer.check({"type": "tool", "name": DENIED}).violations[0].rule == "tool.not_allowed"
        assert enforcer.enforce_rate_limit("request", 5).allow
        engine.close()


@pytest.fixture()
def dying_backend(tmp_path, documents) -> Iterator[str]:
    """A backend process that sends half of policy v2 and SIGKILLs itself; stopped by the test if it survives."""
    body = tmp_path / "v2.json"
    body.write_bytes(documents["v2"])
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.dying_backend", str(port), str(body)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def test_pull_from_a_backend_killed_mid_response_leaves_the_file(dying_backend, tmp_path, documents, vector_keyring,
                                                                 capsys):
    out = tmp_path / "work" / "policy.json"
    out.parent.mkdir()
    out.write_bytes(documents["v1"])
    code = main(["policy", "pull", "--workspace", WS, "--backend", dying_backend, "--out", str(out),
                 "--keyring", str(vector_keyring.path)])
    captured = capsys.readouterr()
    assert code != 0 and captured.out == "" and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert out.read_bytes() == documents["v1"] and [p.name for p in out.parent.iterdir()] == ["policy.json"]


def test_a_gateway_keeps_its_policy_when_the_backend_dies_mid_refresh(dying_backend, tmp_path, documents,
                                                                      vector_keyring, backend, url):
    backend.set_policy(json.loads(documents["v1"]))
    with PolicyClient(url, keyring=vector_keyring, timeout=2.0) as client:
        gateway = PolicyGateway(client, WS)
        gateway.initialize()
        assert gateway.policy.version == "1" and not gateway.check_capability(DENIED).allowed
        client.backend = dying_backend
        assert gateway.on_heartbeat_response({"active_policy_hash": json.loads(documents["v2"])["hash"]}) is False
        assert gateway.policy.version == "1" and not gateway.check_capability(DENIED).allowed
        assert gateway.check_capability(ALLOWED).allowed
        gateway.close()
