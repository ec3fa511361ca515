"""The Python examples of docs/infrastructure.md run as written, in order, against the loopback backend and A2A peer.

Only the backend's and the peer's URLs are replaced by the loopback ones; the
examples share one namespace (later ones use the first one's ``gateway``).
"""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from .backend_server import signed_policy
from .conftest import ROOT

DOC = ROOT / "docs" / "infrastructure.md"
BACKEND = "https://api.sekuire.ai"
PEER = "https://summarizer.example.com"
AGENT = "agent_7"


def _examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def _peer_allowed(content: dict) -> None:
    content["permissions"]["network"]["allowed_domains"].append("127.0.0.1")
    content["permissions"]["network"]["require_tls"] = False
    content["agent"]["capabilities"]["allowed_tools"].append("research:summarize")


def test_the_doc_has_the_four_examples():
    examples = _examples()
    assert len(examples) == 4
    assert BACKEND in examples[0]
    assert PEER in examples[3]


def test_the_examples_run_as_written(url, backend, vector_keyring, envelope_vectors, vector_seed, monkeypatch):
    pytest.importorskip("a2a", reason="the [a2a] extra is not installed")
    from .a2a_peer import a2a_peer

    monkeypatch.setenv("SEKUIRE_KEYRING", str(vector_keyring.path))
    backend.set_policy(signed_policy(envelope_vectors["valid"], vector_seed, version="2", edit_content=_peer_allowed))
    beacon, asyncio_beacon, taskworker, a2a = _examples()
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out), a2a_peer() as peer:
        exec(compile(beacon.replace(BACKEND, url), "infrastructure.md:beacon", "exec"), namespace)  # noqa: S102
        exec(compile(asyncio_beacon, "infrastructure.md:asyncio", "exec"), namespace)  # noqa: S102
        exec(compile(taskworker, "infrastructure.md:taskworker", "exec"), namespace)  # noqa: S102
        exec(compile(a2a.replace(PEER, peer.url), "infrastructure.md:a2a", "exec"), namespace)  # noqa: S102
    gateway = namespace["gateway"]
    assert namespace["decision"].allowed
    assert gateway.policy.version == "2"
    beats = [body for ws, agent, body in backend.heartbeats if agent == AGENT]
    assert beats and all(body["policy_hash"] == gateway.policy.hash for body in beats)
    gateway.close()
    printed = out.getvalue().splitlines()
    assert printed == [
        "done {'number': 7, 'title': 'Broken build'}",
        "denied tool.not_allowed",
        'completed did research:summarize with {"doc": "incident-42"}',
    ]
    assert peer.rpc_methods() == ["SendMessage"]
