"""A2ATaskDelegator against a real A2A peer (the official SDK's server, uvicorn on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

pytest.importorskip("a2a", reason="the [a2a] extra is not installed")

from sekuire.runtime import A2ATaskDelegator, PolicyViolationError  # noqa: E402
from sekuire.runtime.a2a import A2ADelegationError  # noqa: E402
from sekuire.runtime.client import PolicyClient  # noqa: E402
from sekuire.runtime.gateway import PolicyGateway  # noqa: E402

from .a2a_peer import a2a_peer  # noqa: E402
from .backend_server import signed_policy  # noqa: E402
from .conftest import free_port  # noqa: E402

WS = "ws_abc123"


def _peers_allowed(content: dict) -> None:
    """Loopback peers over plain HTTP (127.0.0.1 only, not localhost) and the delegated capability."""
    content["permissions"]["network"]["allowed_domains"].append("127.0.0.1")
    content["permissions"]["network"]["require_tls"] = False
    content["agent"]["capabilities"]["allowed_tools"].append("peer:summarize")


@pytest.fixture()
def gateway(url, backend, vector_keyring, envelope_vectors, vector_seed):
    backend.set_policy(signed_policy(envelope_vectors["valid"], vector_seed, version="2", edit_content=_peers_allowed))
    with PolicyClient(url, keyring=vector_keyring) as client:
        gateway = PolicyGateway(client, WS)
        gateway.initialize()
        yield gateway
        gateway.close()


def test_a_task_is_delegated_over_a2a_1_0_when_capability_and_host_are_allowed(gateway):
    with a2a_peer() as peer:
        result = A2ATaskDelegator(gateway).delegate(peer.url, "peer:summarize", {"doc": "incident-42"})
    assert result.state == "completed"
    assert result.text == 'did peer:summarize with {"doc": "incident-42"}'
    assert (result.protocol_version, result.endpoint) == ("1.0", f"{peer.url}/a2a/jsonrpc")
    assert result.task_id
    assert peer.requests[0][:2] == ("GET", "/.well-known/agent-card.json")
    assert peer.rpc_methods() == ["SendMessage"]


def test_a_0_3_peer_is_asked_with_json_rpc_message_send(gateway):
    async def delegate():
        with a2a_peer(versions=("0.3",)) as peer:
            return peer, await A2ATaskDelegator(gateway).adelegate(peer.url, "peer:summarize", {"n": "one"}, text="please")

    peer, result = asyncio.run(delegate())
    assert peer.rpc_methods() == ["message/send"]
    assert result.protocol_version == "0.3"
    assert (result.state, result.text) == ("completed", 'did peer:summarize with {"n": "one"}')


def test_a_denied_capability_sends_nothing(gateway):
    with a2a_peer() as peer:
        with pytest.raises(PolicyViolationError) as denied:
            A2ATaskDelegator(gateway).delegate(peer.url, "github:delete_repo", {})
        assert peer.requests == []
    assert denied.value.rule == "tool.not_allowed"


def test_a_peer_on_a_host_the_policy_refuses_is_never_contacted(gateway):
    with a2a_peer() as peer:
        with pytest.raises(PolicyViolationError) as denied:
            A2ATaskDelegator(gateway).delegate(peer.url.replace("127.0.0.1", "localhost"), "peer:summarize")
        assert peer.requests == []
    assert denied.value.rule.startswith("network.")


def test_a_plain_http_peer_is_refused_when_the_policy_requires_tls(url, backend, vector_keyring, envelope_vectors,
                                                                   vector_seed):
    def loopback_but_tls(content: dict) -> None:
        _peers_allowed(content)
        content["permissions"]["network"]["require_tls"] = True

    backend.set_policy(signed_policy(envelope_vectors["valid"], vector_seed, version="2", edit_content=loopback_but_tls))
    with PolicyClient(url, keyring=vector_keyring) as client, a2a_peer() as peer:
        gateway = PolicyGateway(client, WS)
        gateway.initialize()
        with pytest.raises(PolicyViolationError) as denied:
            A2ATaskDelegator(gateway).delegate(peer.url, "peer:summarize")
        gateway.close()
        assert peer.requests == []
    assert denied.value.rule.startswith("network.")


def test_a_card_cannot_send_the_task_to_a_host_the_policy_refuses(gateway):
    """The card is on an allowed host but names a refused one for JSON-RPC: the task is not sent."""
    with a2a_peer(rpc_host="localhost") as peer:
        with pytest.raises(PolicyViolationError) as denied:
            A2ATaskDelegator(gateway).delegate(peer.url, "peer:summarize", {"doc": "x"})
        assert [path for _, path, _ in peer.requests] == ["/.well-known/agent-card.json"]
    assert "localhost" in denied.value.reason


def test_no_agent_card_is_a_delegation_error(gateway):
    with pytest.raises(A2ADelegationError, match="no usable Agent Card"):
        A2ATaskDelegator(gateway, timeout=5).delegate(f"http://127.0.0.1:{free_port()}", "peer:summarize")


def test_an_oversized_card_is_refused(gateway):
    with a2a_peer() as peer:
        with pytest.raises(A2ADelegationError, match="larger than 100 bytes"):
            A2ATaskDelegator(gateway, max_card_bytes=100).delegate(peer.url, "peer:summarize")
        assert peer.rpc_methods() == []


def test_an_oversized_answer_is_refused(gateway):
    with a2a_peer() as peer:
        with pytest.raises(A2ADelegationError, match="failed: .*larger than 3000 bytes"):
            A2ATaskDelegator(gateway, max_response_bytes=3000).delegate(peer.url, "peer:summarize", {"doc": "x" * 4000})
        assert peer.rpc_methods() == ["SendMessage"]  # the card fitted; the answer did not


def test_the_enforcing_core_never_imports_the_a2a_sdk():
    code = (
        "import sys\n"
        "import sekuire.runtime, sekuire.runtime.a2a, sekuire.compiler\n"
        "from sekuire.runtime import *\n"
        "assert A2ATaskDelegator.__name__ == 'A2ATaskDelegator'\n"
        "loaded = sorted(m for m in sys.modules if m == 'a2a' or m.startswith(('a2a.', 'google.protobuf')))\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
