"""PolicyClient / AsyncPolicyClient against a real policy backend on loopback: verify, cache, ETag, pin, refuse rollbacks."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from sekuire.compiler import (
    BackendError,
    BadSignatureError,
    HashMismatchError,
    IntegrityError,
    Keyring,
    UnknownKeyError,
    UnsignedPolicyError,
)
from sekuire.runtime.client import (
    AsyncPolicyClient,
    PolicyClient,
    PolicyRollbackError,
    version_order,
)

from .backend_server import signed_policy
from .conftest import free_port

WS = "ws_abc123"
ACTIVE = f"/v1/workspaces/{WS}/policies/active"


@pytest.fixture()
def client(url, vector_keyring):
    with PolicyClient(url, keyring=vector_keyring) as client:
        yield client


def test_fetch_returns_a_verified_policy(client):
    policy = client.fetch_active_policy(WS)
    assert (policy.policy_id, policy.workspace_id, policy.version) == ("policy_xyz", WS, "1")
    assert policy.signature_status == "verified"
    assert policy.hash == "4fcc7998c1c605cceff35aac93e2d0bd9ebb34e98a52361a371670b09133ef18"


def test_an_unknown_key_is_never_fetched_nor_written_to_the_keyring(url, backend, tmp_path):
    keyring_file = tmp_path / "new-keyring.json"
    with PolicyClient(url, keyring=keyring_file) as client, pytest.raises(UnknownKeyError, match="key_test_1"):
        client.fetch_active_policy(WS)
    assert not keyring_file.exists()
    assert backend.seen("GET", "/v1/keys/") == []


def test_revalidation_sends_if_none_match_and_a_304_returns_the_cached_policy(client, backend):
    first = client.fetch_active_policy(WS)
    second = client.fetch_active_policy(WS)
    assert second is first
    gets = backend.seen("GET", ACTIVE)
    assert len(gets) == 2
    assert "If-None-Match" not in gets[0].headers
    assert gets[1].headers["If-None-Match"].startswith('"')


def test_a_changed_policy_is_fetched_in_full_on_revalidation(client, backend, envelope_vectors, vector_seed):
    client.fetch_active_policy(WS)
    backend.set_policy(signed_policy(envelope_vectors["valid"], vector_seed, version="2"))
    assert client.fetch_active_policy(WS).version == "2"


def test_invalidate_cache_forces_a_full_refetch(client, backend):
    first = client.fetch_active_policy(WS)
    client.invalidate_cache(WS)
    again = client.fetch_active_policy(WS)
    assert again == first and again is not first
    assert [("If-None-Match" in r.headers) for r in backend.seen("GET", ACTIVE)] == [False, False]


@pytest.mark.parametrize(
    ("case_name", "error"),
    [
        ("content_changed", HashMismatchError),
        ("version_rolled_back", BadSignatureError),
        ("workspace_swapped", BadSignatureError),
        ("signature_flipped", BadSignatureError),
        ("hash_not_lowercase_hex", HashMismatchError),
        ("signature_missing", UnsignedPolicyError),
    ],
)
def test_invalid_policies_are_refused(client, backend, envelope_vectors, case_name, error):
    case = next(c for c in envelope_vectors["invalid"] if c["name"] == case_name)
    backend.set_policy(case["policy"], WS)
    with pytest.raises(error) as info:
        client.fetch_active_policy(WS)
    assert str(info.value).startswith(f"{client.backend}{ACTIVE}: /")


def test_a_tampered_policy_never_replaces_the_verified_one(client, backend, envelope_vectors):
    good = client.fetch_active_policy(WS)
    tampered = json.loads(json.dumps(envelope_vectors["valid"]))
    tampered["content"]["agent"]["models"]["allowed_models"].append("gpt-4o-mini")
    backend.set_policy(tampered)
    with pytest.raises(HashMismatchError):
        client.fetch_active_policy(WS)
    # the tampered body was not cached under its ETag: the next answer is verified again
    with pytest.raises(HashMismatchError):
        client.fetch_active_policy(WS)
    backend.set_policy(envelope_vectors["valid"])
    assert client.fetch_active_policy(WS) == good


def test_a_key_unknown_to_the_keyring_is_refused(client, backend, envelope_vectors):
    case = next(c for c in envelope_vectors["invalid"] if c["name"] == "unknown_key")
    backend.set_policy(case["policy"], WS)
    with pytest.raises(UnknownKeyError, match="key_unknown"):
        client.fetch_active_policy(WS)
    assert client.keyring.get("key_unknown") is None
    assert backend.seen("GET", "/v1/keys/") == []


def test_a_key_the_backend_serves_is_not_trusted(client, backend, envelope_vectors):
    from nacl.signing import SigningKey

    attacker = SigningKey.generate()
    backend.set_key("key_new", bytes(attacker.verify_key).hex())
    backend.set_policy(signed_policy(envelope_vectors["valid"], bytes(attacker), key_id="key_new", version="9"))
    with pytest.raises(UnknownKeyError):
        client.fetch_active_policy(WS)
    assert client.keyring.get("key_new") is None
    assert "key_new" not in Keyring.load(client.keyring.path).keys


def test_a_pinned_key_is_never_refetched_or_replaced(client, backend, envelope_vectors):
    from nacl.signing import SigningKey

    attacker = SigningKey.generate()
    backend.set_key("key_test_1", bytes(attacker.verify_key).hex())
    backend.set_policy(signed_policy(envelope_vectors["valid"], bytes(attacker), version="9"))
    with pytest.raises(BadSignatureError):
        client.fetch_active_policy(WS)
    assert backend.seen("GET", "/v1/keys/key_test_1") == []
    assert client.keyring.get("key_test_1").hex() == envelope_vectors["key"]["public_key_hex"]


def test_unsigned_is_accepted_only_when_allowed_and_then_loudly(url, backend, envelope_vectors, vector_keyring, caplog):
    unsigned = {k: v for k, v in envelope_vectors["valid"].items() if k not in ("signature", "signing_key_id")}
    backend.set_policy(unsigned)
    with PolicyClient(url, keyring=vector_keyring) as client, pytest.raises(UnsignedPolicyError):
        client.fetch_active_policy(WS)
    with PolicyClient(url, keyring=vector_keyring, allow_unsigned=True) as client, caplog.at_level(logging.WARNING):
        assert client.fetch_active_policy(WS).signature_status == "unsigned"
    assert "workspace ws_abc123: policy policy_xyz is UNSIGNED; accepted only because allow_unsigned=True" in \
        [r.getMessage() for r in caplog.records]


# -- rollback protection ------------------------------------------------------------------------------------------


def test_an_older_version_is_refused_and_the_newer_kept(client, backend, envelope_vectors, vector_seed):
    v2 = signed_policy(envelope_vectors["valid"], vector_seed, version="2")
    backend.set_policy(v2)
    held = client.fetch_active_policy(WS)
    backend.set_policy(envelope_vectors["valid"])  # v1, validly signed
    with pytest.raises(PolicyRollbackError, match=r"/version: version 1 is not newer than the held version 2"):
        client.fetch_active_policy(WS)
    client.invalidate_cache(WS)  # invalidation forces a refetch, it does not lower the floor
    with pytest.raises(PolicyRollbackError) as info:
        client.fetch_active_policy(WS)
    assert info.value.code == "rollback"  # the code callers and the CLI's JSON output tell a rollback by
    backend.set_policy(v2)
    assert client.fetch_active_policy(WS) == held
    backend.set_policy(signed_policy(envelope_vectors["valid"], vector_seed, version="10"))
    assert client.fetch_active_policy(WS).version == "10"  # numeric, not lexical: 10 > 2


def test_same_version_with_other_content_is_refused(client, backend, envelope_vectors, vector_seed):
    client.fetch_active_policy(WS)
    backend.set_policy(signed_policy(envelope_vectors["valid"], vector_seed,
                                     edit_content=lambda c: c["agent"]["models"]["allowed_models"].append("gpt-4o-mini")))
    with pytest.raises(PolicyRollbackError, match="not newer"):
        client.fetch_active_policy(WS)


def test_versions_that_cannot_be_ordered_are_refused(client, backend, envelope_vectors, vector_seed):
    client.fetch_active_policy(WS)
    backend.set_policy(signed_policy(envelope_vectors["valid"], vector_seed, version="2024-06-rc"))
    with pytest.raises(PolicyRollbackError, match="cannot be ordered"):
        client.fetch_active_policy(WS)


def test_unsigned_cannot_replace_signed_even_when_allowed(url, backend, envelope_vectors, vector_keyring):
    with PolicyClient(url, keyring=vector_keyring, allow_unsigned=True) as client:
        client.fetch_active_policy(WS)
        unsigned = {k: v for k, v in envelope_vectors["valid"].items() if k not in ("signature", "signing_key_id")}
        backend.set_policy({**unsigned, "version": "5"})
        with pytest.raises(PolicyRollbackError, match="unsigned policy cannot replace a signed one"):
            client.fetch_active_policy(WS)


def test_another_workspaces_policy_is_refused_even_validly_signed(client, backend, envelope_vectors, vector_seed):
    backend.set_policy(envelope_vectors["valid"], "ws_other")  # signed for ws_abc123, served for ws_other
    with pytest.raises(IntegrityError, match="/workspace_id: backend answered with workspace 'ws_abc123'"):
        client.fetch_active_policy("ws_other")
    client.fetch_active_policy(WS)
    backend.set_policy(signed_policy(envelope_vectors["valid"], vector_seed, workspace_id="ws_other", version="3"), WS)
    with pytest.raises(IntegrityError, match="not 'ws_abc123'"):
        client.fetch_active_policy(WS)


@pytest.mark.parametrize(
    ("version", "order"),
    [("7", (7,)), ("1.10", (1, 10)), ("2.0.0", (2,)), ("v2", None), ("1e3", None), ("", None), ("٣", None), ("1" * 31, None)],
)
def test_version_order(version, order):
    assert version_order(version) == order


# -- backend failures ---------------------------------------------------------------------------------------------


def test_backend_down_is_a_backend_error(vector_keyring):
    with PolicyClient(f"http://127.0.0.1:{free_port()}", keyring=vector_keyring) as client:
        with pytest.raises(BackendError, match="request failed: ConnectError"):
            client.fetch_active_policy(WS)


def test_truncated_body_is_refused(client, backend, envelope_vectors):
    backend.set_policy(body=json.dumps(envelope_vectors["valid"]).encode()[:300], workspace=WS)
    with pytest.raises(BackendError, match="malformed JSON"):
        client.fetch_active_policy(WS)


def test_a_connection_cut_mid_body_is_refused(client, backend):
    backend.cut_after = 120
    with pytest.raises(BackendError, match="request failed: RemoteProtocolError"):
        client.fetch_active_policy(WS)


def test_a_304_without_a_cached_policy_is_an_error(client, backend):
    backend.policy_status = 304
    with pytest.raises(BackendError) as info:
        client.fetch_active_policy(WS)
    assert info.value.message == "304 Not Modified without a cached policy for this ETag"


def test_no_etag_means_a_full_fetch_each_time(client, backend):
    backend.etags = False
    client.fetch_active_policy(WS)
    client.fetch_active_policy(WS)
    assert [("If-None-Match" in r.headers) for r in backend.seen("GET", ACTIVE)] == [False, False]


def test_empty_workspace_is_a_caller_error(client):
    with pytest.raises(ValueError, match="^workspace_id must be a non-empty string$"):
        client.fetch_active_policy("")


def test_the_backend_url_loses_only_its_trailing_slashes(vector_keyring):
    with PolicyClient("http://127.0.0.1:1/prefiX//", keyring=vector_keyring) as client:
        assert client.backend == "http://127.0.0.1:1/prefiX"


# -- asyncio twin -------------------------------------------------------------------------------------------------


def test_async_client_verifies_revalidates_and_refuses_rollbacks(url, backend, envelope_vectors, vector_seed,
                                                                 vector_keyring):
    async def scenario() -> None:
        async with AsyncPolicyClient(url, keyring=vector_keyring.path) as client:
            first = await client.fetch_active_policy(WS)
            assert first.signature_status == "verified"
            assert await client.fetch_active_policy(WS) is first
            backend.set_policy(signed_policy(envelope_vectors["valid"], vector_seed, version="3"))
            assert (await client.fetch_active_policy(WS)).version == "3"
            backend.set_policy(envelope_vectors["valid"])
            with pytest.raises(PolicyRollbackError):
                await client.fetch_active_policy(WS)
            tampered = json.loads(json.dumps(envelope_vectors["valid"]))
            tampered["version"] = "4"
            backend.set_policy(tampered)
            with pytest.raises(BadSignatureError):
                await client.fetch_active_policy(WS)

    asyncio.run(scenario())
    gets = backend.seen("GET", ACTIVE)
    assert "If-None-Match" in gets[1].headers
    assert backend.seen("GET", "/v1/keys/") == []



def test_the_async_client_refuses_unsigned_by_default_too(url, backend, envelope_vectors, vector_keyring):
    backend.set_policy({k: v for k, v in envelope_vectors["valid"].items() if k not in ("signature", "signing_key_id")})

    async def scenario() -> None:
        async with AsyncPolicyClient(url, keyring=vector_keyring) as client:
            with pytest.raises(UnsignedPolicyError):
                await client.fetch_active_policy(WS)
        async with AsyncPolicyClient(url, keyring=vector_keyring, allow_unsigned=True) as client:
            assert (await client.fetch_active_policy(WS)).signature_status == "unsigned"

    asyncio.run(scenario())


def test_clients_close_the_http_client_they_made_and_only_that(url, vector_keyring):
    import httpx

    made = PolicyClient(url, keyring=vector_keyring)
    made.close()
    assert made._http.is_closed
    with httpx.Client() as mine:
        PolicyClient(url, keyring=vector_keyring, http_client=mine).close()
        assert not mine.is_closed

    async def scenario() -> None:
        made = AsyncPolicyClient(url, keyring=vector_keyring)
        await made.close()  # close is aclose
        assert made._http.is_closed
        async with httpx.AsyncClient() as mine:
            await AsyncPolicyClient(url, keyring=vector_keyring, http_client=mine).aclose()
            assert not mine.is_closed

    asyncio.run(scenario())


def test_a_policy_is_logged_as_accepted_once_not_on_each_revalidation(client, caplog):
    with caplog.at_level(logging.INFO, logger="sekuire"):
        client.fetch_active_policy(WS)
        client.invalidate_cache(WS)  # a full refetch of the same policy
        client.fetch_active_policy(WS)
    accepted = [r.getMessage() for r in caplog.records if "accepted" in r.getMessage()]
    assert len(accepted) == 1 and accepted[0].startswith("workspace ws_abc123: policy policy_xyz (v1, hash ")
