"""The agent obeys its own policy: the model server's host, token limits without usage, the development-policy opt-in.

Against a real OpenAI-compatible chat server on loopback (tests/backend_server.py)
that records every request it receives, with its headers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import httpx
import pytest
from sekuire.compiler import PolicyFormatError
from sekuire.runtime import PolicyViolationError, aget_agent, get_agent
from sekuire.runtime.agent import ALLOW_DEV_POLICY_ENV, DEFAULT_COMPLETION_RESERVE

from .backend_server import ChatServer, signed_policy

API_KEY = "sk-test-0123456789-secret"


@pytest.fixture()
def chat(http_server, tmp_path) -> tuple[ChatServer, str]:
    server = ChatServer()
    return server, http_server(tmp_path, server.handler())


@pytest.fixture()
def project(tmp_path, chat, monkeypatch) -> Path:
    _, url = chat
    monkeypatch.setenv("TEST_LLM_KEY", API_KEY)
    monkeypatch.delenv(ALLOW_DEV_POLICY_ENV, raising=False)
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "sekuire.yml").write_text(
        "agent:\n  name: assistant\n  llm:\n    provider: openai\n    model: gpt-4o\n"
        f"    base_url: {url}/v1\n    api_key_env: TEST_LLM_KEY\n"
    )
    return directory


@pytest.fixture()
def write_policy(project, envelope_vectors, vector_seed):
    def write(edit=None, content=None) -> Path:
        changes = {"content": content} if content is not None else {}
        path = project / "policy.json"
        path.write_text(json.dumps(signed_policy(envelope_vectors["valid"], vector_seed, edit_content=edit, **changes)))
        return path

    return write


def _agent(project, policy, keyring, **kwargs):
    return get_agent("assistant", policy, project / "sekuire.yml", keyring=keyring, **kwargs)


# -- the model server's host (issue 10.4) -------------------------------------------------------------------------


def test_a_denied_model_server_never_receives_the_key(project, chat, write_policy, vector_keyring):
    server, _ = chat
    policy = write_policy()  # the vector policy: network allows api.openai.com and *.anthropic.com, TLS required
    with _agent(project, policy, vector_keyring) as agent:
        with pytest.raises(PolicyViolationError) as info:
            agent.chat("Summarize the latest incident report")
        assert {v.rule for v in info.value.decision.violations} == {"network.tls_required", "network.not_allowed"}
        with pytest.raises(PolicyViolationError):
            asyncio.run(agent.achat("again, asynchronously"))
        # Refused before the rate limiter counted anything either.
        assert agent.enforcer.rate_limiter.usage(("ws_abc123", "assistant", "request")) == {"minute": 0, "hour": 0}
    assert server.requests == []


def test_tls_is_required_of_an_allowed_model_server(project, chat, write_policy, vector_keyring):
    server, _ = chat
    policy = write_policy(lambda c: c["permissions"]["network"]["allowed_domains"].append("127.0.0.1"))
    with _agent(project, policy, vector_keyring) as agent, pytest.raises(PolicyViolationError) as info:
        agent.chat("hi")
    assert info.value.rule == "network.tls_required"
    assert server.requests == []


def test_an_allowed_model_server_gets_the_key(project, chat, write_policy, vector_keyring):
    server, _ = chat

    def allow_loopback(content: dict) -> None:
        content["permissions"]["network"].update(require_tls=False, allowed_domains=["127.0.0.1"])

    with _agent(project, write_policy(allow_loopback), vector_keyring) as agent:
        agent.chat("hi")
    (request,) = server.requests
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"


def test_a_blocked_model_server_is_refused_even_when_allowed_by_wildcard(project, chat, write_policy, vector_keyring):
    server, _ = chat

    def block_loopback(content: dict) -> None:
        content["permissions"]["network"].update(require_tls=False, allowed_domains=["*"], blocked_domains=["127.0.0.1"])

    with _agent(project, write_policy(block_loopback), vector_keyring) as agent, pytest.raises(PolicyViolationError) as info:
        agent.chat("hi")
    assert info.value.rule == "network.blocked"
    assert server.requests == []


class _CustomClient:
    """A caller's own LLM client; it exposes where it sends as an httpx.URL, as httpx-based SDKs do."""

    def __init__(self, base_url: object) -> None:
        self.base_url = base_url
        self.calls = 0

    def complete(self, model: str, messages, **kwargs) -> dict:
        self.calls += 1
        return {"choices": [{"message": {"role": "assistant", "content": "ok"}}], "usage": {"total_tokens": 3}}


def test_a_custom_clients_base_url_is_checked_too(project, write_policy, vector_keyring):
    policy = write_policy()
    denied = _CustomClient(httpx.URL("http://127.0.0.1:9/v1"))
    with _agent(project, policy, vector_keyring, llm=denied) as agent, pytest.raises(PolicyViolationError):
        agent.chat("hi")
    assert denied.calls == 0
    allowed = _CustomClient("https://api.openai.com/v1")
    with _agent(project, policy, vector_keyring, llm=allowed) as agent:
        agent.chat("hi")
    assert allowed.calls == 1


# -- the seed's policy: models only (issue 11.2, 11.3) ------------------------------------------------------------


SEED_CONTENT = {"agent": {"models": {"allowed_models": ["gpt-4o", "claude-3-opus"],
                                     "allowed_providers": ["openai", "anthropic"]}}}


def test_a_models_only_policy_lets_chat_through(project, chat, write_policy, vector_keyring, caplog):
    server, _ = chat
    with caplog.at_level(logging.WARNING), _agent(project, write_policy(content=SEED_CONTENT), vector_keyring) as agent:
        response = agent.chat("Summarize the latest incident report")
        agent.chat("and again")
    assert response["choices"][0]["message"]["content"] == "echo: Summarize the latest incident report"
    assert json.loads(server.requests[0].body)["messages"] == [
        {"role": "user", "content": "Summarize the latest incident report"}
    ]
    assert len(server.requests) == 2
    # No network section: the model server is not checked, and the agent says so (once).
    assert caplog.text.count("has no permissions.network section") == 1


def test_aget_agent_is_the_async_twin(project, chat, write_policy, vector_keyring):
    server, _ = chat
    policy = write_policy(content=SEED_CONTENT)

    async def scenario() -> str:
        agent = await aget_agent("assistant", policy, project / "sekuire.yml", keyring=vector_keyring)
        async with agent:
            response = await agent.achat("hello")
        return response["choices"][0]["message"]["content"]

    assert asyncio.run(scenario()) == "echo: hello"
    assert server.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"


# -- token limits without usage (issue 10.5) ----------------------------------------------------------------------


def _token_limit(per_minute: int) -> dict:
    return {**SEED_CONTENT, "rate_limits": {"tokens": {"max_per_minute": per_minute}}}


def test_tokens_without_usage_are_estimated_not_constant(project, chat, write_policy, vector_keyring):
    server, _ = chat
    server.report_usage = False
    server.reply = "x" * 40_000  # ~10,000 tokens an answer
    with _agent(project, write_policy(content=_token_limit(1000)), vector_keyring) as agent:
        passed = 0
        for _ in range(20):
            try:
                agent.chat("hi", max_tokens=100)
                passed += 1
            except PolicyViolationError as exc:
                assert exc.rule == "rate_limit.exceeded"
        used = agent.enforcer.rate_limiter.usage(("ws_abc123", "assistant", "token"))["minute"]
    assert passed == 1 and len(server.requests) == 1
    assert used >= 10_000


def test_without_max_tokens_the_default_reserve_is_held(project, chat, write_policy, vector_keyring):
    server, _ = chat
    server.report_usage = False
    server.reply = "x" * 40_000
    with _agent(project, write_policy(content=_token_limit(1000)), vector_keyring) as agent:
        with pytest.raises(PolicyViolationError, match=f"{DEFAULT_COMPLETION_RESERVE + 5} requested > 1000"):
            agent.chat("hi")  # 5 prompt tokens + the default reserve
    assert server.requests == []
    with _agent(project, write_policy(content=_token_limit(5000)), vector_keyring) as agent:
        outcomes = []
        for _ in range(20):
            try:
                agent.chat("hi")
                outcomes.append("ok")
            except PolicyViolationError:
                outcomes.append("denied")
    assert outcomes == ["ok"] + ["denied"] * 19
    assert len(server.requests) == 1


# -- the development policy is opt-in (issue 10.3) ----------------------------------------------------------------


def test_without_policy_json_get_agent_refuses_naming_the_file(project):
    with pytest.raises(PolicyFormatError) as info:
        get_agent("assistant", project / "policy.json", project / "sekuire.yml")
    message = str(info.value)
    assert message.startswith(f"{project / 'policy.json'}: no such file")
    assert "allow_development_policy=True" in message and ALLOW_DEV_POLICY_ENV in message


@pytest.mark.parametrize(("value", "allowed"), [("true", True), ("TRUE", True), ("True", True), (" true", False),
                                                ("true ", False), ("1", False), ("yes", False), ("", False)])
def test_the_environment_opt_in_is_exactly_true(project, chat, monkeypatch, value, allowed):
    monkeypatch.setenv(ALLOW_DEV_POLICY_ENV, value)
    if not allowed:
        with pytest.raises(PolicyFormatError, match="no such file"):
            get_agent("assistant", project / "policy.json", project / "sekuire.yml")
        return
    with get_agent("assistant", project / "policy.json", project / "sekuire.yml") as agent:
        assert agent.policy.signature_status == "unsigned"
        agent.chat("hi")
    assert len(chat[0].requests) == 1


def test_the_argument_overrides_the_environment(project, monkeypatch):
    monkeypatch.setenv(ALLOW_DEV_POLICY_ENV, "true")
    with pytest.raises(PolicyFormatError, match="no such file"):
        get_agent("assistant", project / "policy.json", project / "sekuire.yml", allow_development_policy=False)
