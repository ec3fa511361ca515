"""Beacon against the loopback test backend: heartbeat bodies, policy swaps on its own, backoff, bad answers."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading

import pytest
from sekuire.compiler import content_hash
from sekuire.runtime import Beacon, DecisionCounters
from sekuire.runtime.beacon import MIN_INTERVAL
from sekuire.runtime.client import AsyncPolicyClient, PolicyClient
from sekuire.runtime.gateway import PolicyGateway

from .backend_server import signed_policy
from .conftest import wait_until

WS = "ws_abc123"
AGENT = "agent_7"


def _allow_delete_repo(content: dict) -> None:
    content["agent"]["capabilities"]["allowed_tools"].append("github:delete_repo")


@pytest.fixture()
def gateway(url, vector_keyring):
    with PolicyClient(url, keyring=vector_keyring) as client:
        gateway = PolicyGateway(client, WS)
        gateway.initialize()
        yield gateway
        gateway.close()


def _beats(backend) -> list[dict]:
    with backend.lock:
        return [body for ws, agent, body in backend.heartbeats if (ws, agent) == (WS, AGENT)]


def test_a_heartbeat_carries_the_section_10_body_and_counts_since_the_last_beat(gateway, backend):
    beacon = Beacon(gateway, AGENT, interval=5.0, jitter=0.0)
    gateway.check_capability("github:create_issue")
    gateway.check_capability("github:create_issue")
    gateway.check_capability("github:delete_repo")
    assert beacon.beat() == 5.0
    gateway.check_capability("github:delete_repo")
    beacon.beat()
    first, second = _beats(backend)
    assert set(first) == {"status", "policy_hash", "bundle_revision", "decisions", "timestamp"}
    assert first["status"] == "active"
    assert first["policy_hash"] == gateway.policy_hash
    assert first["bundle_revision"] == gateway.enforcer.engine.revision and first["bundle_revision"]
    assert first["decisions"] == {"allowed": 2, "denied": 1}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["timestamp"])
    assert second["decisions"] == {"allowed": 0, "denied": 1}
    assert (beacon.beats, beacon.failures) == (2, 0)


def test_the_counts_of_a_failed_beat_travel_with_the_next_one(gateway, backend):
    beacon = Beacon(gateway, AGENT, interval=1.0, jitter=0.0)
    gateway.check_capability("github:create_issue")
    backend.heartbeat_status = 503
    beacon.beat()
    gateway.check_capability("github:delete_repo")
    backend.heartbeat_status = None
    beacon.beat()
    beacon.beat()
    failed, carried, empty = _beats(backend)
    assert failed["decisions"] == {"allowed": 1, "denied": 0}
    assert carried["decisions"] == {"allowed": 1, "denied": 1}
    assert empty["decisions"] == {"allowed": 0, "denied": 0}


def test_a_beacon_swaps_in_a_new_policy_on_its_own_within_one_interval(gateway, backend, envelope_vectors, vector_seed):
    """The first heartbeat the backend answers after a change brings the swap: the beat after it reports the new hash."""
    v2 = signed_policy(envelope_vectors["valid"], vector_seed, version="2", edit_content=_allow_delete_repo)
    with Beacon(gateway, AGENT, interval=0.2):
        assert wait_until(lambda: len(_beats(backend)) >= 2)
        assert not gateway.check_capability("github:delete_repo").allowed
        backend.set_policy(v2)
        after_change = len(_beats(backend))  # heartbeats from this index on were answered with v2's hash
        assert wait_until(lambda: len(_beats(backend)) >= after_change + 2)
        beats = _beats(backend)
    assert beats[after_change + 1]["policy_hash"] == v2["hash"]
    assert beats[after_change + 1]["status"] == "active"
    assert gateway.policy.version == "2"
    assert gateway.check_capability("github:delete_repo").allowed


def test_an_asyncio_beacon_with_an_async_client_swaps_within_one_interval(backend, url, vector_keyring, envelope_vectors,
                                                                           vector_seed):
    v2 = signed_policy(envelope_vectors["valid"], vector_seed, version="2", edit_content=_allow_delete_repo)

    async def scenario() -> tuple[list[dict], int, str]:
        async with AsyncPolicyClient(url, keyring=vector_keyring) as client:
            gateway = PolicyGateway(client, WS)
            await gateway.ainitialize()
            async with Beacon(gateway, AGENT, interval=0.2):
                while len(_beats(backend)) < 2:
                    await asyncio.sleep(0.02)
                backend.set_policy(v2)
                after_change = len(_beats(backend))
                while len(_beats(backend)) < after_change + 2:
                    await asyncio.sleep(0.02)
            version = gateway.policy.version
            gateway.close()
            return _beats(backend), after_change, version

    beats, after_change, version = asyncio.run(scenario())
    assert beats[after_change + 1]["policy_hash"] == v2["hash"]
    assert version == "2"


def test_a_thread_beacon_needs_a_sync_client(url, vector_keyring):
    gateway = PolicyGateway(AsyncPolicyClient(url, keyring=vector_keyring), WS)
    with pytest.raises(TypeError, match="astart"):
        Beacon(gateway, AGENT).start()


@pytest.mark.parametrize(
    "answer",
    [b"not json", b"[1, 2]", b'{"a": 1, "a": 2}', b'{"active_policy_hash": "x"}' + b" " * (1 << 17)],
    ids=["not json", "not an object", "duplicate keys", "oversized"],
)
def test_a_bad_answer_backs_off_and_keeps_enforcing(gateway, backend, answer):
    beacon = Beacon(gateway, AGENT, interval=1.0, jitter=0.0, max_backoff=5.0)
    backend.heartbeat_body = answer
    assert [beacon.beat() for _ in range(4)] == [2.0, 4.0, 5.0, 5.0]
    assert beacon.failures == 4 and beacon.beats == 0
    assert WS in beacon.last_error or "heartbeat" in beacon.last_error
    assert gateway.policy.version == "1"
    assert gateway.check_capability("github:create_issue").allowed
    assert not gateway.check_capability("github:delete_repo").allowed
    backend.heartbeat_body = None
    assert beacon.beat() == 1.0
    assert beacon.failures == 0


@pytest.mark.parametrize("hash_value", [5, "", None, ["a"]])
def test_an_invalid_announced_hash_changes_nothing(gateway, backend, hash_value):
    backend.heartbeat_body = json.dumps({"active_policy_hash": hash_value}).encode()
    before = len(backend.seen("GET"))
    Beacon(gateway, AGENT, jitter=0.0).beat()
    assert len(backend.seen("GET")) == before  # no refresh attempted
    assert gateway.policy.version == "1"


def test_a_tampered_announced_policy_is_refused_and_the_beacon_reports_degraded(gateway, backend, envelope_vectors):
    tampered = json.loads(json.dumps(envelope_vectors["valid"]))
    _allow_delete_repo(tampered["content"])
    tampered["version"] = "2"
    tampered["hash"] = content_hash(tampered["content"])
    backend.set_policy(tampered)
    beacon = Beacon(gateway, AGENT, interval=1.0, jitter=0.0)
    beacon.beat()
    beacon.beat()
    first, second = _beats(backend)
    assert (first["status"], second["status"]) == ("active", "degraded")
    assert second["policy_hash"] == envelope_vectors["valid"]["hash"]
    assert not gateway.check_capability("github:delete_repo").allowed


@pytest.mark.parametrize(("hint", "delay"), [(7, 7.0), (2.5, 2.5), (0.001, MIN_INTERVAL), (1e9, 60.0),
                                              ("soon", 3.0), (True, 3.0), (-4, 3.0)])
def test_next_heartbeat_s_is_honoured_within_bounds(gateway, backend, hint, delay):
    backend.next_heartbeat_s = hint
    assert Beacon(gateway, AGENT, interval=3.0, jitter=0.0, max_backoff=60.0).beat() == delay


def test_jitter_spreads_the_interval(gateway):
    beacon = Beacon(gateway, AGENT, interval=10.0, jitter=0.2)
    delays = {beacon.beat() for _ in range(5)}
    assert all(8.0 <= d <= 12.0 for d in delays)
    assert len(delays) > 1


def test_a_backend_that_never_answers_costs_one_deadline(gateway):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        beacon = Beacon(gateway, AGENT, interval=1.0, jitter=0.0, deadline=0.3,
                        backend=f"http://127.0.0.1:{silent.getsockname()[1]}")
        assert beacon.beat() == 2.0
    assert "Timeout" in beacon.last_error
    assert gateway.check_capability("github:create_issue").allowed


@pytest.mark.parametrize("agent_id", ["..", "."])
def test_an_agent_id_cannot_move_the_heartbeat_url(gateway, agent_id):
    with pytest.raises(ValueError, match="path segment"):
        Beacon(gateway, agent_id)


def test_an_agent_id_is_one_path_segment(gateway, backend):
    Beacon(gateway, "team/a?b").beat()
    assert backend.seen("POST", "/agents/team%2Fa%3Fb/heartbeat")


def test_a_stopped_beacon_sends_nothing_more(gateway, backend):
    beacon = Beacon(gateway, AGENT, interval=0.1).start()
    assert wait_until(lambda: len(_beats(backend)) >= 1)
    beacon.stop()
    count = len(_beats(backend))
    threading.Event().wait(0.4)
    assert len(_beats(backend)) == count


def test_decision_counters_lose_nothing_under_threads():
    counters = DecisionCounters()
    readings = []

    def work() -> None:
        for i in range(20_000):
            counters.count(i % 3 != 0)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        readings.append(counters.snapshot())
    for thread in threads:
        thread.join()
    final = counters.snapshot()
    assert (final.allowed, final.denied) == (4 * 13_333, 4 * 6_667)
    assert all(a.allowed <= b.allowed and a.denied <= b.denied for a, b in zip(readings, readings[1:]))
