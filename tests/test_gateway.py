"""PolicyGateway against a real policy backend on loopback: checks, heartbeat swaps, and keeping the last verified policy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading

import pytest
from sekuire.compiler import content_hash
from sekuire.runtime import PolicyViolationError, SekuireRuntimeError
from sekuire.runtime.client import AsyncPolicyClient, PolicyClient
from sekuire.runtime.enforcer import PolicyEnforcer
from sekuire.runtime.gateway import PolicyGateway

from .backend_server import signed_policy
from .conftest import static_http_server

WS = "ws_abc123"


def _allow_delete_repo(content: dict) -> None:
    content["agent"]["capabilities"]["allowed_tools"].append("github:delete_repo")


def _deny_create_issue(content: dict) -> None:
    content["agent"]["capabilities"]["denied_tools"].append("github:create_issue")


@pytest.fixture()
def gateway(url, vector_keyring):
    with PolicyClient(url, keyring=vector_keyring) as client:
        gateway = PolicyGateway(client, WS)
        gateway.initialize()
        yield gateway
        gateway.close()


def test_check_capability_returns_decisions_and_never_raises_for_a_deny(gateway):
    assert gateway.policy.version == "1"
    allowed = gateway.check_capability("github:create_issue")
    assert allowed.allowed and allowed.violations == ()
    denied = gateway.check_capability("github:delete_repo")
    assert not denied.allowed
    assert [v.rule for v in denied.violations] == ["tool.not_allowed"]
    assert "github:delete_repo" in denied.violations[0].message
    with pytest.raises(PolicyViolationError):
        gateway.enforcer.enforce_capability("github:delete_repo")


def test_heartbeat_with_the_current_hash_fetches_nothing(gateway, backend):
    before = len(backend.requests)
    assert gateway.on_heartbeat_response({"active_policy_hash": gateway.policy_hash, "status": "ok"}) is True
    assert gateway.on_heartbeat_response({"status": "ok"}) is True  # nothing announced
    assert len(backend.requests) == before


def test_heartbeat_with_a_new_hash_swaps_policy_and_decisions(gateway, backend, envelope_vectors, vector_seed):
    old_enforcer = gateway.enforcer
    v2 = signed_policy(envelope_vectors["valid"], vector_seed, version="2", edit_content=_allow_delete_repo)
    backend.set_policy(v2)
    assert not gateway.check_capability("github:delete_repo").allowed
    assert gateway.on_heartbeat_response({"active_policy_hash": v2["hash"]}) is True
    assert (gateway.policy.version, gateway.policy_hash) == ("2", v2["hash"])
    assert gateway.enforcer is not old_enforcer
    decision = gateway.check_capability("github:delete_repo")
    assert decision.allowed and decision.policy["hash"] == v2["hash"]


def test_heartbeat_with_a_tampered_new_policy_keeps_the_old(gateway, backend, envelope_vectors, caplog):
    """New content with a matching hash field, but the signature of the old policy: an edit in transit."""
    tampered = json.loads(json.dumps(envelope_vectors["valid"]))
    _allow_delete_repo(tampered["content"])
    tampered["version"] = "2"
    tampered["hash"] = content_hash(tampered["content"])
    backend.set_policy(tampered)
    with caplog.at_level(logging.ERROR, logger="sekuire.runtime.gateway"):
        assert gateway.on_heartbeat_response({"active_policy_hash": tampered["hash"]}) is False
    assert gateway.policy.version == "1"
    assert not gateway.check_capability("github:delete_repo").allowed
    assert "policy refresh failed, keeping policy policy_xyz v1" in caplog.text
    assert "bad signature" in caplog.text


def test_a_policy_other_than_the_announced_one_is_not_installed(gateway, backend, envelope_vectors, vector_seed, caplog):
    v2 = signed_policy(envelope_vectors["valid"], vector_seed, version="2", edit_content=_allow_delete_repo)
    backend.set_policy(v2)
    with caplog.at_level(logging.ERROR):
        assert gateway.on_heartbeat_response({"active_policy_hash": "0" * 64}) is False
    assert gateway.policy.version == "1"
    assert "announced policy hash 0000000000000000" in caplog.text


def test_a_rollback_announced_by_heartbeat_is_refused(gateway, backend, envelope_vectors, vector_seed):
    v2 = signed_policy(envelope_vectors["valid"], vector_seed, version="2", edit_content=_allow_delete_repo)
    backend.set_policy(v2)
    assert gateway.on_heartbeat_response({"active_policy_hash": v2["hash"]})
    backend.set_policy(envelope_vectors["valid"])
    assert gateway.on_heartbeat_response({"active_policy_hash": envelope_vectors["valid"]["hash"]}) is False
    assert gateway.policy.version == "2"


@pytest.mark.parametrize("how", ["short body", "connection cut"])
def test_a_truncated_body_during_refresh_keeps_the_last_verified_policy(gateway, backend, envelope_vectors, vector_seed, how):
    v2 = signed_policy(envelope_vectors["valid"], vector_seed, version="2", edit_content=_allow_delete_repo)
    if how == "short body":
        backend.set_policy(body=json.dumps(v2).encode()[:500], workspace=WS)
    else:
        backend.set_policy(v2)
        backend.cut_after = 500
    assert gateway.on_heartbeat_response({"active_policy_hash": v2["hash"]}) is False
    assert gateway.policy.version == "1"
    assert gateway.check_capability("github:create_issue").allowed
    assert not gateway.check_capability("github:delete_repo").allowed


def test_backend_down_during_refresh_keeps_the_last_verified_policy(backend, vector_keyring, tmp_path, caplog):
    server = contextlib.ExitStack()
    url = server.enter_context(static_http_server(tmp_path, backend.handler()))
    with PolicyClient(url, keyring=vector_keyring) as client:
        gateway = PolicyGateway(client, WS)
        try:
            gateway.initialize()
        finally:
            server.close()  # the backend goes down
        with caplog.at_level(logging.ERROR):
            assert gateway.on_heartbeat_response({"active_policy_hash": "f" * 64}) is False
        assert "request failed" in caplog.text
        assert gateway.policy.version == "1"
        assert gateway.check_capability("github:create_issue").allowed
        gateway.close()


def test_rate_limit_usage_survives_a_policy_swap(gateway, backend, envelope_vectors, vector_seed):
    def two_per_minute(content: dict, note: str) -> None:
        content["rate_limits"]["requests"]["max_per_minute"] = 2
        content["compliance"]["note"] = note

    v2 = signed_policy(envelope_vectors["valid"], vector_seed, version="2", edit_content=lambda c: two_per_minute(c, "v2"))
    backend.set_policy(v2)
    assert gateway.refresh(v2["hash"])
    first = gateway.enforcer
    first.enforce_rate_limit("request")
    v3 = signed_policy(envelope_vectors["valid"], vector_seed, version="3", edit_content=lambda c: two_per_minute(c, "v3"))
    backend.set_policy(v3)
    assert gateway.on_heartbeat_response({"active_policy_hash": v3["hash"]})
    assert gateway.enforcer is not first
    gateway.enforcer.enforce_rate_limit("request")
    with pytest.raises(PolicyViolationError) as info:
        gateway.enforcer.enforce_rate_limit("request")
    assert info.value.rule == "rate_limit.exceeded"


def test_concurrent_checks_see_one_policy_or_the_other_never_a_mix(gateway, backend, envelope_vectors, vector_seed):
    """Odd versions deny create_issue, even ones allow it: every decision must agree with the hash it reports."""
    versions = {}
    for number in range(2, 8):
        edit = _deny_create_issue if number % 2 else None
        versions[number] = signed_policy(envelope_vectors["valid"], vector_seed, version=str(number), edit_content=edit)
    allows = {doc["hash"]: not int(doc["version"]) % 2 for doc in versions.values()}
    allows[gateway.policy_hash] = True
    stop = threading.Event()
    seen: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def checker() -> None:
        try:
            while not stop.is_set():
                decision = gateway.check_capability("github:create_issue")
                seen.append((decision.policy["hash"], decision.allowed))
        except BaseException as exc:  # reported below, never swallowed
            errors.append(exc)

    threads = [threading.Thread(target=checker) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for document in versions.values():
            backend.set_policy(document)
            assert gateway.on_heartbeat_response({"active_policy_hash": document["hash"]})
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert seen and all(allows[h] == allowed for h, allowed in seen)
    assert gateway.policy.version == "7"


def test_uninitialised_gateway_and_wrong_client_kind(url, vector_keyring):
    with PolicyClient(url, keyring=vector_keyring) as client:
        gateway = PolicyGateway(client, WS)
        with pytest.raises(SekuireRuntimeError, match="not initialised"):
            gateway.check_capability("github:create_issue")
        with pytest.raises(TypeError, match="use initialize"):
            asyncio.run(gateway.ainitialize())
    with pytest.raises(TypeError, match="not both"):
        PolicyGateway(client, WS, enforcer_factory=PolicyEnforcer, warn_only=True)


def test_enforcer_factory_and_kwargs_are_used(url, vector_keyring):
    with PolicyClient(url, keyring=vector_keyring) as client:
        gateway = PolicyGateway(client, WS, agent_id="bot-7", warn_only=True)
        gateway.initialize()
        assert (gateway.enforcer.agent_id, gateway.enforcer.warn_only) == ("bot-7", True)
        assert not gateway.enforcer.enforce_capability("github:delete_repo").allowed  # warn-only: returned, not raised
        built = []
        custom = PolicyGateway(client, WS, enforcer_factory=lambda p: built.append(p) or PolicyEnforcer(p, agent_id="x"))
        custom.initialize()
        assert [p.version for p in built] == ["1"] and custom.enforcer.agent_id == "x"
        gateway.close()
        custom.close()


def test_async_gateway_initialises_checks_and_swaps(url, backend, envelope_vectors, vector_seed, vector_keyring):
    v2 = signed_policy(envelope_vectors["valid"], vector_seed, version="2", edit_content=_allow_delete_repo)

    async def scenario() -> None:
        async with AsyncPolicyClient(url, keyring=vector_keyring) as client:
            gateway = PolicyGateway(client, WS)
            assert (await gateway.ainitialize()).version == "1"
            assert not (await gateway.acheck_capability("github:delete_repo")).allowed
            backend.set_policy(v2)
            assert await gateway.aon_heartbeat_response({"active_policy_hash": v2["hash"]}) is True
            assert (await gateway.acheck_capability("github:delete_repo")).allowed
            tampered = dict(v2, version="3")
            backend.set_policy(tampered)
            assert await gateway.aon_heartbeat_response({"active_policy_hash": "a" * 64}) is False
            assert gateway.policy.version == "2"
            gateway.close()

    asyncio.run(scenario())
