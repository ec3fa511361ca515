"""The MCP gate against real things: ``sekuire mcp-proxy`` in front of a real MCP server subprocess
(tests/mcp_server.py, built with the official SDK), driven by the SDK's own stdio client; and the
Python session gate around a real ``ClientSession``.

The server appends every tool call it receives to a file, so "never reached the server" is read
from the server's own record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, ClientSession, MCPError, StdioServerParameters, stdio_client
from sekuire.compiler import Keyring, load_policy, sign_document
from sekuire.compiler.bundle.signing import BundleSigner
from sekuire.compiler.bundle.tarball import build_bundle
from sekuire.compiler.rego.compile import compile_policy
from sekuire.runtime import PolicyEnforcer, PolicyViolationError
from sekuire.runtime.mcp_gate import ToolGate, gate_session
from sekuire.runtime.mcp_proxy import MCPProxy

from .conftest import VECTOR_POLICY
from .security_support import bundle_key

SERVER = Path(__file__).with_name("mcp_server.py")
SEKUIRE = Path(sys.executable).parent / "sekuire"
ALL_TOOLS = ["echo", "add", "delete_files"]
# delete_files matches the allow list but is blocked: the deny must come from denied_tools (tool.blocked).
TOOLS_SECTION = {"allowed_tools": ["echo", "add", "delete_*"], "denied_tools": ["delete_files"]}
DENIED_MESSAGE = "tool 'delete_files' is blocked by the workspace policy"


@pytest.fixture()
def mcp_policy(tmp_path, vector_seed, vector_keyring) -> Path:
    """The vector policy with a tools section for the test server, signed with the vector key."""
    document = json.loads(VECTOR_POLICY.read_text(encoding="utf-8"))
    document["content"]["agent"]["capabilities"] = TOOLS_SECTION
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(sign_document(document, vector_seed, document["signing_key_id"])), encoding="utf-8")
    return path


class Run:
    """One proxy session: where the server records calls, the decision log and the proxy's stderr."""

    def __init__(self, tmp_path: Path) -> None:
        self.calls = tmp_path / "calls.jsonl"
        self.decisions = tmp_path / "decisions.jsonl"
        self.stderr = tmp_path / "proxy.stderr"

    def server_calls(self) -> list[dict[str, Any]]:
        if not self.calls.exists():
            return []
        return [json.loads(line) for line in self.calls.read_text(encoding="utf-8").splitlines()]

    def decision_events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.decisions.read_text(encoding="utf-8").splitlines()]


def proxy_command(run: Run, source: list[str], *extra: str, server: list[str] | None = None) -> list[str]:
    return [
        str(SEKUIRE), "mcp-proxy", *source, "--decision-log", str(run.decisions), *extra,
        "--", *(server or [sys.executable, str(SERVER)]),
    ]  # fmt: skip


def drive(run: Run, command: list[str], body: Callable[[ClientSession], Awaitable[Any]], *, modern: bool = False) -> Any:
    """Start ``command`` with the SDK's stdio client, open a session (initialize, or discover on 2026-07-28), run body."""

    async def main() -> Any:
        params = StdioServerParameters(command=command[0], args=command[1:], env={"SEKUIRE_TEST_MCP_CALLS": str(run.calls)})
        with run.stderr.open("w", encoding="utf-8") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
                with anyio.fail_after(60):
                    if modern:
                        await session.discover()
                    else:
                        await session.initialize()
                    return await body(session)

    return anyio.run(main)


def file_source(policy: Path, keyring: Keyring) -> list[str]:
    return ["--file", str(policy), "--keyring", str(keyring.path)]


# -- the proxy ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("modern", [False, True], ids=["initialize-2025-11-25", "discover-2026-07-28"])
def test_proxy_hides_and_refuses_denied_tools_and_relays_the_rest(tmp_path, mcp_policy, vector_keyring, modern):
    run = Run(tmp_path)

    async def body(session: ClientSession) -> dict[str, Any]:
        seen: dict[str, Any] = {"version": session.protocol_version, "server": session.server_info}
        seen["tools"] = [tool.name for tool in (await session.list_tools()).tools]
        seen["add"] = await session.call_tool("add", {"a": 2, "b": 3})
        seen["echo"] = await session.call_tool("echo", {"text": "hi"})
        with pytest.raises(MCPError) as denied:
            await session.call_tool("delete_files", {"path": "/"})
        seen["denied"] = denied.value
        seen["prompts"] = [prompt.name for prompt in (await session.list_prompts()).prompts]
        seen["prompt"] = await session.get_prompt("summarize", {"topic": "OPA"})
        seen["resource"] = await session.read_resource("greeting://ada")
        seen["templates"] = [t.uri_template for t in (await session.list_resource_templates()).resource_templates]
        return seen

    seen = drive(run, proxy_command(run, file_source(mcp_policy, vector_keyring)), body, modern=modern)

    assert seen["version"] == ("2026-07-28" if modern else "2025-11-25")
    assert seen["server"].name == "sekuire-test-server"  # initialize/discover went through to the real server
    assert seen["tools"] == ["echo", "add"]
    assert seen["add"].structured_content == {"result": 5} and not seen["add"].is_error
    assert seen["echo"].content[0].text == "hi"
    error = seen["denied"]
    assert error.code == -32602
    assert error.message == f"Tool 'delete_files' denied by policy: tool.blocked: {DENIED_MESSAGE}"
    assert error.data["rule"] == "tool.blocked" and error.data["message"] == DENIED_MESSAGE
    assert error.data["tool"] == "delete_files"
    # The server's own record: the allowed calls, never the denied one.
    assert run.server_calls() == [{"tool": "add", "arguments": {"a": 2, "b": 3}}, {"tool": "echo", "arguments": {"text": "hi"}}]
    assert seen["prompts"] == ["summarize"]
    assert seen["prompt"].messages[0].content.text == "Summarize the latest news about OPA."
    assert seen["resource"].contents[0].text == "Hello, ada!"
    assert seen["templates"] == ["greeting://{name}"]
    # on_violation: the CLI reports each violation on stderr.
    assert f"denied: tool.blocked: {DENIED_MESSAGE}" in run.stderr.read_text(encoding="utf-8")


def test_every_decision_is_logged_in_opas_format(tmp_path, mcp_policy, vector_keyring):
    run = Run(tmp_path)

    async def body(session: ClientSession) -> None:
        await session.list_tools()
        await session.call_tool("echo", {"text": "x"})
        with pytest.raises(MCPError):
            await session.call_tool("delete_files", {"path": "/"})

    drive(run, proxy_command(run, file_source(mcp_policy, vector_keyring), "--agent", "claude-code"), body)
    events = run.decision_events()
    decided = [(e["input"]["action"]["name"], e["result"]["allow"]) for e in events]
    # The listing judges each tool once (a dry run, logged); each call is enforced (logged again, or answered
    # from the decision cache, which is logged too).
    assert decided[:3] == [("echo", True), ("add", True), ("delete_files", False)]
    assert decided[3:] == [("echo", True), ("delete_files", False)]
    denied = events[-1]
    assert denied["result"]["violations"] == [{"rule": "tool.blocked", "message": DENIED_MESSAGE}]
    assert denied["input"]["context"] == {"agent": "claude-code", "workspace": "ws_abc123"}
    assert denied["path"] == "sekuire/workspaces/ws_abc123/decision"


def test_deny_as_result_answers_with_an_error_result(tmp_path, mcp_policy, vector_keyring):
    run = Run(tmp_path)

    async def body(session: ClientSession) -> Any:
        return await session.call_tool("delete_files", {"path": "/"})

    result = drive(run, proxy_command(run, file_source(mcp_policy, vector_keyring), "--deny-as", "result"), body)
    assert result.is_error is True
    assert result.content[0].text == f"Tool 'delete_files' denied by policy: tool.blocked: {DENIED_MESSAGE}"
    assert result.meta["sekuire"]["rule"] == "tool.blocked"
    assert run.server_calls() == []


def test_proxy_runs_a_signed_bundle(tmp_path, mcp_policy, vector_keyring):
    """--bundle: the same gate from a bundle built and signed as `sekuire policy build` does, verified first."""
    run = Run(tmp_path)
    bundle = tmp_path / "bundle.tar.gz"
    bundle.write_bytes(build_bundle(compile_policy(load_policy(mcp_policy, vector_keyring)), signer=BundleSigner(bundle_key().private)))
    public = tmp_path / "bundle.pub.pem"
    public.write_bytes(bundle_key().public)

    async def body(session: ClientSession) -> tuple[list[str], MCPError]:
        names = [tool.name for tool in (await session.list_tools()).tools]
        with pytest.raises(MCPError) as denied:
            await session.call_tool("delete_files", {"path": "/"})
        await session.call_tool("add", {"a": 1, "b": 1})
        return names, denied.value

    source = ["--bundle", str(bundle), "--verification-key", str(public)]
    names, denied = drive(run, proxy_command(run, source), body)
    assert names == ["echo", "add"]
    assert denied.data["rule"] == "tool.blocked"
    assert [call["tool"] for call in run.server_calls()] == ["add"]
    # The bundle's compliance section (require_audit_logging) and ids reach the enforcer: decisions are logged.
    assert run.decision_events()[-1]["bundles"] == {"sekuire-ws_abc123": {"revision": compile_policy(load_policy(mcp_policy, vector_keyring)).revision}}


# -- raw JSON-RPC on the proxy's stdin: what a hand-written client could send ---------------------------


def raw_session(run: Run, command: list[str], lines: list[str]) -> list[dict[str, Any]]:
    """Send ``lines`` (after initialize) to the proxy; return every message it wrote back.

    Reads until each request has its answer (an object's ``id``; ``None`` for a line that is not one):
    the server answers concurrent requests in any order.
    """
    handshake = [
        json.dumps({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}),
        json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    ]  # fmt: skip
    expected = {"init"}
    for line in lines:
        parsed = json.loads(line)
        expected.add(parsed.get("id") if isinstance(parsed, dict) else None)
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "SEKUIRE_TEST_MCP_CALLS": str(run.calls)},
    )
    watchdog = threading.Timer(60, process.kill)  # a proxy that never answers fails the test instead of hanging it
    watchdog.start()
    try:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(("\n".join([*handshake, *lines]) + "\n").encode())
        process.stdin.flush()
        answers = []
        while not expected <= {answer.get("id") for answer in answers}:
            line = process.stdout.readline()
            assert line, f"the proxy closed its output with {expected - {a.get('id') for a in answers}} unanswered"
            answers.append(json.loads(line))
        process.stdin.close()
        assert process.wait(timeout=30) == 0
        return answers
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_name_the_gate_judges_is_the_name_the_server_gets(tmp_path, mcp_policy, vector_keyring):
    """Duplicate keys, escapes, a batch, a non-string name: the proxy relays what it parsed, or nothing."""
    run = Run(tmp_path)
    lines = [
        # Duplicate "name": whichever one a parser keeps, the gate and the server must agree.
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a"},"name":"delete_files"}}',
        '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_files","arguments":{"text":"b"},"name":"echo"}}',
        # A JSON escape spelling the denied name.
        '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete\\u005ffiles","arguments":{"path":"/"}}}',
        # JSON-RPC batches are not MCP: refused, not relayed.
        '[{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"delete_files","arguments":{"path":"/"}}}]',
        '{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":5}}',
        '{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{}}',
    ]
    answers = {answer.get("id"): answer for answer in raw_session(run, proxy_command(run, file_source(mcp_policy, vector_keyring)), lines)}
    assert answers[1]["error"]["data"]["rule"] == "tool.blocked"
    assert answers[2]["result"]["content"][0]["text"] == "b"
    assert answers[3]["error"]["data"]["rule"] == "tool.blocked"
    assert answers[None]["error"]["code"] == -32700  # the batch line
    assert answers[5]["error"]["data"]["rule"] == "input.invalid"
    assert answers[6]["error"]["data"]["rule"] == "input.invalid"
    assert run.server_calls() == [{"tool": "echo", "arguments": {"text": "b"}}]


def test_tools_list_pages_are_filtered_and_other_answers_pass(tmp_path, mcp_policy, vector_keyring):
    run = Run(tmp_path)
    lines = [
        '{"jsonrpc":"2.0","id":"t","method":"tools/list"}',
        '{"jsonrpc":"2.0","id":"r","method":"resources/templates/list"}',
        '{"jsonrpc":"2.0","id":"nope","method":"no/such/method"}',
    ]
    answers = {answer.get("id"): answer for answer in raw_session(run, proxy_command(run, file_source(mcp_policy, vector_keyring)), lines)}
    assert [tool["name"] for tool in answers["t"]["result"]["tools"]] == ["echo", "add"]
    assert answers["t"]["result"]["tools"][0]["inputSchema"]["required"] == ["text"]  # the tool is relayed whole
    assert answers["r"]["result"]["resourceTemplates"][0]["uriTemplate"] == "greeting://{name}"
    assert answers["nope"]["error"]["code"] == -32601  # the server's own answer, relayed
    assert answers["init"]["result"]["serverInfo"]["name"] == "sekuire-test-server"


# -- bad input and failures: one line, non-zero, no server ----------------------------------------------


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SEKUIRE), *args], check=False, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_bad_policy_file_is_a_one_line_error_and_no_server_starts(tmp_path, mcp_policy, vector_keyring):
    run = Run(tmp_path)
    server = [sys.executable, "-c", f"open({str(run.calls)!r}, 'w').write('started')"]
    broken = tmp_path / "broken.json"
    broken.write_text('{"policy_id": ', encoding="utf-8")
    tampered = tmp_path / "tampered.json"
    document = json.loads(mcp_policy.read_text(encoding="utf-8"))
    document["content"]["agent"]["capabilities"]["denied_tools"] = []
    tampered.write_text(json.dumps(document), encoding="utf-8")
    missing = tmp_path / "missing.json"
    unsigned = tmp_path / "unsigned.json"
    document = json.loads(mcp_policy.read_text(encoding="utf-8"))
    del document["signature"]
    unsigned.write_text(json.dumps(document), encoding="utf-8")

    cases = ((broken, "broken.json"), (tampered, "hash"), (missing, "missing.json"), (unsigned, "unsigned.json"))
    for path, needle in cases:
        result = run_cli("mcp-proxy", *file_source(path, vector_keyring), "--decision-log", str(run.decisions), "--", *server)
        assert_one_line_error(result, needle)
    assert not run.calls.exists()
    assert not run.decisions.exists()  # nothing written by a refused start


def test_bundle_without_a_valid_signature_is_refused(tmp_path, mcp_policy, vector_keyring):
    bundle = tmp_path / "bundle.tar.gz"
    bundle.write_bytes(build_bundle(compile_policy(load_policy(mcp_policy, vector_keyring))))  # unsigned
    public = tmp_path / "bundle.pub.pem"
    public.write_bytes(bundle_key().public)
    server = [sys.executable, str(SERVER)]
    assert_one_line_error(run_cli("mcp-proxy", "--bundle", str(bundle), "--", *server), "--verification-key")
    assert_one_line_error(
        run_cli("mcp-proxy", "--bundle", str(bundle), "--verification-key", str(public), "--", *server), "not signed"
    )


def test_usage_errors(tmp_path, mcp_policy, vector_keyring):
    assert_one_line_error(run_cli("mcp-proxy", *file_source(mcp_policy, vector_keyring)), "after `--`")
    assert_one_line_error(
        run_cli("mcp-proxy", *file_source(mcp_policy, vector_keyring), "--", str(tmp_path / "no-such-server")),
        "cannot start the MCP server",
        "no-such-server",
    )
    assert_one_line_error(
        run_cli("mcp-proxy", *file_source(mcp_policy, vector_keyring), "--decision-log", str(tmp_path), "--", "true"),
        str(tmp_path),
    )
    assert run_cli("mcp-proxy", "--", "true").returncode == 2  # neither --file nor --bundle: argparse usage


@pytest.mark.parametrize("unsigned", [False, True], ids=["signed", "allow-unsigned"])
def test_proxy_exits_when_the_server_does(tmp_path, mcp_policy, vector_keyring, unsigned):
    """A server that dies ends the proxy (one line, non-zero) even while the client keeps its pipe open."""
    source = file_source(mcp_policy, vector_keyring)
    if unsigned:
        document = json.loads(mcp_policy.read_text(encoding="utf-8"))
        del document["signature"]
        mcp_policy.write_text(json.dumps(document), encoding="utf-8")
        source = [*source, "--allow-unsigned"]
    command = [str(SEKUIRE), "mcp-proxy", *source, "--", sys.executable, "-c", "pass"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        code = process.wait(timeout=30)
        stderr = process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert code == 1
    assert stderr.strip().splitlines()[-1] == f"error: the MCP server {sys.executable!r} exited"
    assert ("is UNSIGNED; accepted only because of --allow-unsigned" in stderr) == unsigned


# -- the Python session gate ------------------------------------------------------------------------------


def server_session(run: Run, body: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    return drive(run, [sys.executable, str(SERVER)], body)


def test_gate_session_filters_listing_and_refuses_denied_calls(tmp_path, mcp_policy, vector_keyring):
    run = Run(tmp_path)
    violations: list[tuple[str, str]] = []
    enforcer = PolicyEnforcer(load_policy(mcp_policy, vector_keyring), on_violation=lambda r, m: violations.append((r, m)))

    async def body(session: ClientSession) -> dict[str, Any]:
        gated = gate_session(session, enforcer)
        seen: dict[str, Any] = {"raw": [tool.name for tool in (await session.list_tools()).tools]}
        listing = await gated.list_tools()
        seen["gated"] = [tool.name for tool in listing.tools]
        seen["add"] = await gated.call_tool("add", {"a": 20, "b": 22})
        with pytest.raises(PolicyViolationError) as denied:
            await gated.call_tool("delete_files", {"path": "/"})
        seen["denied"] = denied.value
        seen["prompts"] = [p.name for p in (await gated.list_prompts()).prompts]  # passed through
        return seen

    with enforcer:
        seen = server_session(run, body)
    assert seen["raw"] == ALL_TOOLS  # the server offers all three ...
    assert seen["gated"] == ["echo", "add"]  # ... the gate shows two
    assert seen["add"].structured_content == {"result": 42}
    assert (seen["denied"].rule, seen["denied"].reason) == ("tool.blocked", DENIED_MESSAGE)
    assert violations == [("tool.blocked", DENIED_MESSAGE)]
    assert seen["prompts"] == ["summarize"]
    assert run.server_calls() == [{"tool": "add", "arguments": {"a": 20, "b": 22}}]


def test_gate_session_in_warn_only_mode_hides_nothing_and_lets_calls_through(tmp_path, mcp_policy, vector_keyring, caplog):
    run = Run(tmp_path)
    violations: list[str] = []
    enforcer = PolicyEnforcer(
        load_policy(mcp_policy, vector_keyring), warn_only=True, on_violation=lambda r, m: violations.append(r)
    )

    async def body(session: ClientSession) -> list[str]:
        gated = gate_session(session, enforcer)
        names = [tool.name for tool in (await gated.list_tools()).tools]
        await gated.call_tool("delete_files", {"path": "/tmp/x"})
        return names

    with enforcer, caplog.at_level("WARNING"):
        names = server_session(run, body)
    assert names == ALL_TOOLS
    assert violations == ["tool.blocked"]
    assert [call["tool"] for call in run.server_calls()] == ["delete_files"]
    assert any("WARN-ONLY" in record.getMessage() and "delete_files" in record.getMessage() for record in caplog.records)


def test_gated_session_wraps_the_session_context(tmp_path, mcp_policy, vector_keyring):
    """``async with gate_session(ClientSession(read, write), enforcer)``: the session is entered and left with it."""
    run = Run(tmp_path)

    async def main() -> list[str]:
        params = StdioServerParameters(command=sys.executable, args=[str(SERVER)])
        with PolicyEnforcer(load_policy(mcp_policy, vector_keyring)) as enforcer, run.stderr.open("w") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                gate_session(ClientSession(read, write), enforcer) as session,
            ):
                await session.initialize()
                return [tool.name for tool in (await session.list_tools()).tools]

    assert anyio.run(main) == ["echo", "add"]


def test_the_enforcing_core_never_imports_the_mcp_sdk():
    code = (
        "import sys\n"
        "import sekuire.runtime, sekuire.compiler.cli\n"
        "from sekuire.compiler.cli.main import build_parser\n"
        "import sekuire.runtime.mcp_gate\n"
        "build_parser()\n"
        "assert not [m for m in sys.modules if m == 'mcp' or m.startswith(('mcp.', 'mcp_types'))], sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- the relay's rules on single messages (added cases; the real server covers the rest) ------------------


def test_each_listing_page_is_filtered_and_its_cursor_kept(mcp_policy, vector_keyring):
    async def main() -> list[Any]:
        with PolicyEnforcer(load_policy(mcp_policy, vector_keyring)) as enforcer:
            proxy = MCPProxy(ToolGate(enforcer))
            out = []
            for request_id, page in ((1, {"tools": [{"name": "delete_files"}, {"name": "echo"}], "nextCursor": "p2"}),
                                     (2, {"tools": [{"name": "add"}, {"name": "bad\u0000name"}, {"title": "no name"}]})):
                request = types.JSONRPCRequest(jsonrpc="2.0", id=request_id, method="tools/list", params={})
                assert await proxy.from_client(request) == (request, None)
                out.append(await proxy.from_server(types.JSONRPCResponse(jsonrpc="2.0", id=request_id, result=page)))
            # An answer to an id that was not a listing (or was already answered) is relayed as it is.
            other = types.JSONRPCResponse(jsonrpc="2.0", id=1, result={"tools": [{"name": "delete_files"}]})
            out.append(await proxy.from_server(other))
            return out

    first, second, other = anyio.run(main)
    assert first.result == {"tools": [{"name": "echo"}], "nextCursor": "p2"}
    assert second.result == {"tools": [{"name": "add"}]}
    assert other.result == {"tools": [{"name": "delete_files"}]}


def test_the_sdks_high_level_client_through_the_proxy_and_through_gate_session(tmp_path, mcp_policy, vector_keyring):
    """``mcp.Client`` (auto mode: it probes server/discover first) behind the proxy, and wrapped by gate_session."""
    run = Run(tmp_path)
    env = {"SEKUIRE_TEST_MCP_CALLS": str(run.calls)}
    proxied = proxy_command(run, file_source(mcp_policy, vector_keyring))

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with Client(StdioServerParameters(command=proxied[0], args=proxied[1:], env=env)) as client:
            seen["proxy tools"] = [tool.name for tool in (await client.list_tools()).tools]
            with pytest.raises(MCPError) as denied:
                await client.call_tool("delete_files", {"path": "/"})
            seen["proxy denied"] = denied.value.data["rule"]
            seen["proxy echo"] = (await client.call_tool("echo", {"text": "via proxy"})).content[0].text
        with PolicyEnforcer(load_policy(mcp_policy, vector_keyring)) as enforcer:
            direct = StdioServerParameters(command=sys.executable, args=[str(SERVER)], env=env)
            async with gate_session(Client(direct), enforcer) as client:
                seen["gated tools"] = [tool.name for tool in (await client.list_tools()).tools]
                with pytest.raises(PolicyViolationError) as refused:
                    await client.call_tool("delete_files", {"path": "/"})
                seen["gated denied"] = refused.value.rule
                seen["gated add"] = (await client.call_tool("add", {"a": 1, "b": 2})).structured_content
        return seen

    seen = anyio.run(main)
    assert seen == {
        "proxy tools": ["echo", "add"], "proxy denied": "tool.blocked", "proxy echo": "via proxy",
        "gated tools": ["echo", "add"], "gated denied": "tool.blocked", "gated add": {"result": 3},
    }  # fmt: skip
    assert [call["tool"] for call in run.server_calls()] == ["echo", "add"]
