"""get_agent, Agent and OpenAIChatClient against a real OpenAI-compatible chat server on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from sekuire.compiler import HashMismatchError, PolicyFormatError
from sekuire.runtime import (
    InvalidActionError,
    PolicyViolationError,
    SekuireRuntimeError,
)
from sekuire.runtime.agent import development_policy, estimate_tokens, get_agent
from sekuire.runtime.llm import LLMError, OpenAIChatClient
from sekuire.runtime.manifest import ManifestError, load_manifest, manifest_input

from .backend_server import ChatServer, signed_policy
from .conftest import free_port

API_KEY = "sk-test-0123456789-secret"
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture()
def chat(http_server, tmp_path) -> tuple[ChatServer, str]:
    server = ChatServer()
    return server, http_server(tmp_path, server.handler())


@pytest.fixture()
def project(tmp_path, chat, monkeypatch) -> Path:
    """A project directory with sekuire.yml pointing at the loopback chat server, and tools.json."""
    _, url = chat
    monkeypatch.setenv("TEST_LLM_KEY", API_KEY)
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "sekuire.yml").write_text(
        "agent:\n"
        "  name: support-bot\n"
        "  llm:\n"
        "    provider: openai\n"
        "    model: gpt-4o\n"
        f"    base_url: {url}/v1\n"
        "    api_key_env: TEST_LLM_KEY\n"
        "  tools: tools.json\n"
        "capabilities:\n"
        "  provides: [github:create_issue]\n"
    )
    (directory / "tools.json").write_text(json.dumps({"tools": [{"name": "web_search"}, {"name": "file_read"}]}))
    return directory


def _write_policy(directory: Path, envelope_vectors: dict, seed: bytes, edit=None) -> Path:
    path = directory / "policy.json"
    path.write_text(json.dumps(signed_policy(envelope_vectors["valid"], seed, edit_content=edit)))
    return path


def _limits(requests: int = 60, tokens: int = 40000):
    def edit(content: dict) -> None:
        content["rate_limits"] = {"requests": {"max_per_minute": requests}, "tokens": {"max_per_minute": tokens}}

    return edit


def _loopback_llm(content: dict) -> None:
    """The policy's network section also allows the loopback chat server (plain http)."""
    network = content["permissions"]["network"]
    network["require_tls"] = False
    network["allowed_domains"].append("127.0.0.1")


@pytest.fixture()
def agent_factory(project, envelope_vectors, vector_seed, vector_keyring):
    agents = []

    def make(edit=None, *, loopback: bool = True, **kwargs):
        def edits(content: dict) -> None:
            if loopback:
                _loopback_llm(content)
            if edit is not None:
                edit(content)

        policy = _write_policy(project, envelope_vectors, vector_seed, edits)
        agent = get_agent("support-bot", policy, project / "sekuire.yml", keyring=vector_keyring, **kwargs)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


# -- chat ---------------------------------------------------------------------------------------------------------


def test_a_disallowed_model_is_refused_before_any_request(agent_factory, chat):
    server, _ = chat
    agent = agent_factory()
    with pytest.raises(PolicyViolationError) as info:
        agent.chat(HELLO, model="gpt-4o-mini")
    assert info.value.rule == "model.not_allowed"
    with pytest.raises(PolicyViolationError) as info:
        agent.chat(HELLO, model="gemini-1.5-pro")
    assert {v.rule for v in info.value.decision.violations} == {"model.provider_not_allowed", "model.not_allowed"}
    assert server.requests == []


def test_an_allowed_model_reaches_the_chat_server(agent_factory, chat, caplog):
    server, _ = chat
    agent = agent_factory()
    with caplog.at_level(logging.DEBUG):
        response = agent.chat([{"role": "user", "content": "hello there"}], max_tokens=50, temperature=0.2)
    assert response["choices"][0]["message"]["content"] == "echo: hello there"
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    body = json.loads(request.body)
    assert body == {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 50,
                    "temperature": 0.2}
    assert API_KEY not in caplog.text and API_KEY not in repr(agent.llm)


def test_requests_beyond_max_per_minute_are_refused(agent_factory, chat):
    server, _ = chat
    agent = agent_factory(_limits(requests=3))
    for _ in range(3):
        agent.chat(HELLO)
    with pytest.raises(PolicyViolationError) as info:
        agent.chat(HELLO)
    assert info.value.rule == "rate_limit.exceeded" and "request rate limit exceeded" in info.value.reason
    assert len(server.requests) == 3


def test_tokens_are_reserved_before_and_accounted_after(agent_factory, chat):
    server, _ = chat
    server.total_tokens = 60
    agent = agent_factory(_limits(tokens=100))
    with pytest.raises(PolicyViolationError, match="token rate limit exceeded"):
        agent.chat(HELLO, max_tokens=200)  # the reserve alone is over the limit
    assert server.requests == []
    agent.chat(HELLO, max_tokens=1)  # reserves ~6, the server reports 60: 60 counted
    agent.chat(HELLO, max_tokens=1)  # 60 + ~6 <= 100: allowed; 120 counted
    with pytest.raises(PolicyViolationError, match="token rate limit exceeded: 120 used"):
        agent.chat(HELLO, max_tokens=1)
    assert len(server.requests) == 2


def test_llm_failures_are_one_line_errors_without_the_key(agent_factory, chat):
    server, _ = chat
    server.status = 500
    agent = agent_factory()
    with pytest.raises(LLMError) as info:
        agent.chat(HELLO)
    assert str(info.value).endswith("/v1/chat/completions: HTTP 500: upstream says no")
    assert API_KEY not in str(info.value)
    client = OpenAIChatClient(f"http://127.0.0.1:{free_port()}/v1", api_key=API_KEY)
    with pytest.raises(LLMError, match="request failed: ConnectError") as info:
        client.complete("gpt-4o", HELLO)
    assert API_KEY not in str(info.value) and API_KEY not in repr(client)
    client.close()


def test_bad_chat_arguments_are_caller_errors(agent_factory, chat):
    agent = agent_factory()
    with pytest.raises(InvalidActionError, match="messages"):
        agent.chat(42)
    with pytest.raises(InvalidActionError, match="messages"):
        agent.chat(["hi"])
    with pytest.raises(InvalidActionError, match="max_tokens"):
        agent.chat(HELLO, max_tokens=0)
    assert chat[0].requests == []


def test_estimate_tokens_counts_text_parts():
    assert estimate_tokens([{"role": "user", "content": "x" * 40}]) == 10 + 4
    parts = [{"type": "text", "text": "y" * 8}, {"type": "image_url", "image_url": {"url": "data:..."}}]
    assert estimate_tokens([{"role": "user", "content": parts}, {"role": "system"}]) == 2 + 8


# -- tools --------------------------------------------------------------------------------------------------------


def test_tool_calls_pass_enforce_tool_first(agent_factory):
    agent = agent_factory()
    calls = []

    @agent.tool()
    def web_search(query: str) -> str:
        calls.append(query)
        return f"results for {query}"

    agent.register_tool("file_delete", lambda path: calls.append(path))
    agent.register_tool("shell", lambda cmd: calls.append(cmd))
    assert agent.call_tool("web_search", query="opa") == "results for opa"
    with pytest.raises(PolicyViolationError) as info:
        agent.call_tool("file_delete", path="/workspace/a.txt")
    assert info.value.rule == "tool.blocked"
    with pytest.raises(PolicyViolationError) as info:
        agent.call_tool("shell", cmd="rm -rf /")
    assert info.value.rule == "tool.not_allowed"
    assert calls == ["opa"]
    with pytest.raises(InvalidActionError, match="not registered"):
        agent.call_tool("file_read", path="/workspace/a.txt")  # allowed by file_*, but there is no such tool
    with pytest.raises(InvalidActionError, match="already registered"):
        agent.register_tool("web_search", print)


def test_warn_only_lets_the_call_through(agent_factory, chat):
    agent = agent_factory(warn_only=True)
    agent.chat(HELLO, model="gpt-4o-mini")
    assert len(chat[0].requests) == 1


# -- async --------------------------------------------------------------------------------------------------------


def test_async_chat_and_tools(agent_factory, chat):
    server, _ = chat
    agent = agent_factory(_limits(requests=2))

    @agent.tool("web_search")
    async def search(query: str) -> str:
        await asyncio.sleep(0)
        return query.upper()

    async def scenario() -> None:
        with pytest.raises(PolicyViolationError):
            await agent.achat(HELLO, model="gpt-4o-mini")
        assert server.requests == []
        response = await agent.achat(HELLO)
        assert response["choices"][0]["message"]["content"] == "echo: hi"
        await agent.achat(HELLO)
        with pytest.raises(PolicyViolationError, match="request rate limit exceeded"):
            await agent.achat(HELLO)
        assert await agent.acall_tool("web_search", query="opa") == "OPA"
        with pytest.raises(PolicyViolationError):
            await agent.acall_tool("file_delete", path="/x")
        await agent.aclose()

    asyncio.run(scenario())
    assert len(server.requests) == 2


# -- policy.json or the development policy ------------------------------------------------------------------------


def test_without_policy_json_a_development_policy_is_enforced_loudly(project, chat, caplog):
    server, _ = chat
    with caplog.at_level(logging.WARNING):
        agent = get_agent("support-bot", project / "policy.json", project / "sekuire.yml", allow_development_policy=True)
    assert "DEVELOPMENT POLICY for agent support-bot" in caplog.text
    assert agent.policy.signature_status == "unsigned" and agent.policy.workspace_id == "development"
    agent.chat(HELLO)
    assert len(server.requests) == 1
    with pytest.raises(PolicyViolationError):
        agent.chat(HELLO, model="gpt-4o-mini")
    agent.register_tool("web_search", lambda: "ok")
    agent.register_tool("file_write", lambda: "no")
    assert agent.call_tool("web_search") == "ok"
    with pytest.raises(PolicyViolationError, match="not in the allowed tools"):
        agent.call_tool("file_write")
    with pytest.raises(PolicyViolationError) as info:
        agent.enforcer.enforce_network("api.openai.com")
    assert info.value.rule == "network.missing"
    agent.close()


def test_development_policy_allows_exactly_the_manifest(project):
    policy = development_policy(load_manifest(project / "sekuire.yml"))
    assert policy.raw_content["agent"] == {
        "models": {"allowed_providers": ["openai"], "allowed_models": ["gpt-4o"]},
        "capabilities": {"allowed_tools": ["web_search", "file_read"]},
    }
    assert policy.content.permissions is None


def test_a_tampered_policy_json_is_refused(project, envelope_vectors, vector_keyring):
    tampered = json.loads(json.dumps(envelope_vectors["valid"]))
    tampered["content"]["agent"]["models"]["allowed_models"].append("gpt-4o-mini")
    (project / "policy.json").write_text(json.dumps(tampered))
    with pytest.raises(HashMismatchError):
        get_agent("support-bot", project / "policy.json", project / "sekuire.yml", keyring=vector_keyring)


def test_neither_policy_nor_manifest(tmp_path):
    with pytest.raises(PolicyFormatError, match="no such file, and no .*sekuire.yml to derive a development policy"):
        get_agent("bot", tmp_path / "policy.json", tmp_path / "sekuire.yml", allow_development_policy=True)


def test_policy_json_without_manifest_needs_model_and_llm(tmp_path, vector_keyring):
    from .conftest import VECTOR_POLICY

    with get_agent("bot", VECTOR_POLICY, tmp_path / "sekuire.yml", keyring=vector_keyring) as agent:
        assert agent.enforcer.agent_id == "bot"
        with pytest.raises(InvalidActionError, match="has no model"):
            agent.chat(HELLO)
        with pytest.raises(SekuireRuntimeError, match="has no LLM client"):
            agent.chat(HELLO, model="gpt-4o")


# -- the manifest -------------------------------------------------------------------------------------------------


def test_manifest_input_is_the_entry_point_input(project):
    manifest = load_manifest(project / "sekuire.yml")
    assert manifest_input(manifest) == {
        "agent": {"name": "support-bot", "llm": {"provider": "openai", "model": "gpt-4o"}},
        "tools": ["web_search", "file_read"],
        "capabilities": {"provides": ["github:create_issue"]},
    }


@pytest.mark.parametrize(
    ("text", "tools", "message"),
    [
        ("agent:\n  name: a\n  llm: {provider: openai}\n", None, "sekuire.yml: /agent/llm/model: required field is missing"),
        ("agent:\n  name: a\n  llm: {provider: openai, model: 4}\n", None, "sekuire.yml: /agent/llm/model: expected a non-empty string"),
        ("agent: [1]\n", None, "sekuire.yml: /agent: expected a mapping"),
        ("", None, "sekuire.yml: expected a mapping"),
        ("agent:\n  name: a\n  llm: {provider: openai, model: m\n", None, "sekuire.yml: malformed YAML: "),
        ("agent:\n  name: a\n  llm: {provider: openai, model: m}\n  tools: t.yml\n", "tools:\n  - name: x\n  - {nom: y}\n",
         "t.yml: /tools/1/name: required field is missing"),
        ("agent:\n  name: a\n  llm: {provider: openai, model: m}\n  tools: missing.json\n", None, "missing.json: No such file"),
        ("agent:\n  name: a\n  llm: {provider: openai, model: m}\nlogging: {enabled: yes please}\n", None,
         "sekuire.yml: /logging/enabled: expected true or false"),
    ],
)
def test_manifest_errors_name_file_and_field(tmp_path, text, tools, message):
    (tmp_path / "sekuire.yml").write_text(text)
    if tools is not None:
        (tmp_path / "t.yml").write_text(tools)
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path / "sekuire.yml")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_manifest_naming_another_agent_is_refused(project, envelope_vectors, vector_seed, vector_keyring):
    policy = _write_policy(project, envelope_vectors, vector_seed)
    with pytest.raises(ManifestError, match="/agent/name: defines agent 'support-bot', not 'other-bot'"):
        get_agent("other-bot", policy, project / "sekuire.yml", keyring=vector_keyring)
