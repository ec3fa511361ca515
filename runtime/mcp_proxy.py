"""The stdio MCP proxy behind ``sekuire mcp-proxy``: an MCP server subprocess, seen through the policy's tool gate.

An MCP client (Claude Code, Cursor, any client of the protocol) starts the proxy
instead of the server. The proxy starts the server with the SDK's
``stdio_client`` and relays JSON-RPC messages both ways, one at a time and in
order, parsed and re-serialised with the SDK's message types. Two methods are
gated (:class:`~sekuire.runtime.mcp_gate.ToolGate`):

- ``tools/list``: the server's answer (each page) comes back without the tools
  the policy denies;
- ``tools/call`` of a denied tool never reaches the server: the proxy answers
  itself, by default with a JSON-RPC error (code -32602, what the protocol
  uses for a tool the server does not offer: the tool is not in the listing
  either), message ``Tool 'x' denied by policy: <rule>: <message>`` and
  ``data`` ``{"tool", "rule", "message", "violations"}``; with
  ``deny_as="result"``, with a tool result carrying ``isError: true``, the same
  text, and the same object under ``_meta.sekuire``.

Everything else (initialize or server/discover, resources, prompts,
completions, pings, notifications both ways, the server's own requests such
as sampling and elicitation, and their responses) is relayed unchanged. The
gate checks the parsed message and the server receives that same parsed
message re-serialised, so the name the policy judged is the name the server
sees, however the client spelled its JSON (duplicate keys, escapes). A line
that is not a JSON-RPC message is answered with a parse error and not relayed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Literal, Protocol

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import mcp_types as types
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.message import SessionMessage

from ..compiler.errors import SekuireError
from .decision import PolicyViolationError
from .errors import InvalidActionError, SekuireRuntimeError
from .mcp_gate import INVALID_INPUT, ToolGate

__all__ = [
    "DENIED_CODE",
    "DenyStyle",
    "GATE_FAILURE",
    "MCPProxy",
    "MCPProxyError",
    "ReadStream",
    "Side",
    "WriteStream",
    "serve_stdio",
]

logger = logging.getLogger(__name__)

DenyStyle = Literal["error", "result"]
#: Which side ended the session: the client (its stdin closed) or the server (its stdout closed).
Side = Literal["client", "server"]
#: The JSON-RPC error code of a denied call (the protocol's code for an unknown tool).
DENIED_CODE = types.INVALID_PARAMS
#: The rule of a deny that stands for a failure of the gate itself (fail closed).
GATE_FAILURE = "engine.unavailable"

Message = types.JSONRPCMessage

_READ_CHUNK = 1 << 16


class ReadStream(Protocol):
    """Messages from one side (the SDK's transports and anyio memory streams both are)."""

    def __aiter__(self) -> AsyncIterator[SessionMessage | Exception]: ...


class WriteStream(Protocol):
    """Messages to one side."""

    async def send(self, item: SessionMessage, /) -> None: ...


class MCPProxyError(SekuireRuntimeError):
    """The proxy could not start the MCP server, or the server went away."""

    code = "mcp_proxy"


class MCPProxy:
    """Relay MCP messages between a client and a server, with the tool gate on ``tools/list`` and ``tools/call``."""

    def __init__(self, gate: ToolGate, *, deny_as: DenyStyle = "error") -> None:
        if deny_as not in ("error", "result"):
            raise ValueError(f"deny_as must be 'error' or 'result', not {deny_as!r}")
        self.gate = gate
        self.deny_as = deny_as
        self._listings: set[types.RequestId] = set()  # ids of the client's tools/list requests awaiting an answer

    async def from_client(self, message: Message) -> tuple[Message | None, Message | None]:
        """Route one client message: ``(for the server, answer for the client)``, exactly one of them set."""
        if isinstance(message, types.JSONRPCRequest):
            if message.method == "tools/call":
                return await self._call(message)
            if message.method == "tools/list":
                self._listings.add(message.id)
        return message, None

    async def from_server(self, message: Message) -> Message:
        """One server message as the client gets it: a tools/list answer loses the denied tools."""
        if isinstance(message, types.JSONRPCResponse | types.JSONRPCError) and message.id in self._listings:
            self._listings.discard(message.id)
            if isinstance(message, types.JSONRPCResponse):
                return await self._filter_listing(message)
        return message

    async def _filter_listing(self, message: types.JSONRPCResponse) -> Message:
        tools = message.result.get("tools")
        if not isinstance(tools, list):
            logger.warning("the server's tools/list answer has no tools list: relaying it with none")
            kept: list[Any] = []
        else:
            kept = await self.gate.visible(tools)
            if len(kept) == len(tools):
                return message
        return message.model_copy(update={"result": {**message.result, "tools": kept}})

    async def _call(self, message: types.JSONRPCRequest) -> tuple[Message | None, Message | None]:
        name = (message.params or {}).get("name")
        try:
            await self.gate.authorize(name)
        except PolicyViolationError as exc:
            violations = exc.decision.violations if exc.decision is not None else ()
            listed = [{"rule": v.rule, "message": v.message} for v in violations]
            return None, self._denial(message.id, name, exc.rule, exc.reason, listed)
        except InvalidActionError as exc:
            return None, self._denial(message.id, name, INVALID_INPUT, exc.message)
        except SekuireError as exc:
            return None, self._denial(message.id, name, GATE_FAILURE, str(exc))
        except Exception as exc:  # fail closed: a gate that cannot decide denies
            logger.exception("the tool gate failed on %r; denying", name)
            return None, self._denial(message.id, name, GATE_FAILURE, f"the gate failed: {type(exc).__name__}")
        return message, None

    def _denial(
        self, request_id: types.RequestId, name: object, rule: str, reason: str, violations: list[dict[str, str]] | None = None
    ) -> Message:
        text = f"Tool {name!r} denied by policy: {rule}: {reason}"
        data = {
            "tool": name if isinstance(name, str) else None,
            "rule": rule,
            "message": reason,
            "violations": violations or [{"rule": rule, "message": reason}],
        }
        if self.deny_as == "error":
            return types.JSONRPCError(
                jsonrpc="2.0", id=request_id, error=types.ErrorData(code=DENIED_CODE, message=text, data=data)
            )
        result = {
            "content": [{"type": "text", "text": text}],
            "isError": True,
            "resultType": "complete",
            "_meta": {"sekuire": data},
        }
        return types.JSONRPCResponse(jsonrpc="2.0", id=request_id, result=result)

    async def run(self, client: tuple[ReadStream, WriteStream], server: tuple[ReadStream, WriteStream]) -> Side:
        """Relay until one side closes; returns which one did."""
        client_read, client_write = client
        server_read, server_write = server
        ended: list[Side] = []

        async def send(stream: WriteStream, message: Message, side: Side, scope: anyio.CancelScope) -> None:
            try:
                await stream.send(SessionMessage(message))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                ended.append(side)  # that side's pipe is gone
                scope.cancel()

        async def client_to_server(scope: anyio.CancelScope) -> None:
            async for item in client_read:
                if isinstance(item, Exception):
                    error = types.ErrorData(code=types.PARSE_ERROR, message=f"not a JSON-RPC message: {item}")
                    await send(client_write, types.JSONRPCError(jsonrpc="2.0", id=None, error=error), "client", scope)
                    continue
                upstream, answer = await self.from_client(item.message)
                if upstream is not None:
                    await send(server_write, upstream, "server", scope)
                if answer is not None:
                    await send(client_write, answer, "client", scope)
            ended.append("client")
            scope.cancel()

        async def server_to_client(scope: anyio.CancelScope) -> None:
            async for item in server_read:
                if isinstance(item, Exception):
                    logger.warning("dropping a line from the MCP server that is not a JSON-RPC message: %s", item)
                    continue
                await send(client_write, await self.from_server(item.message), "client", scope)
            ended.append("server")
            scope.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(client_to_server, group.cancel_scope)
            group.start_soon(server_to_client, group.cancel_scope)
        return ended[0] if ended else "client"


@asynccontextmanager
async def _process_stdio() -> AsyncIterator[tuple[ReadStream, WriteStream]]:
    """This process's stdin and stdout as message streams (the client's side of the proxy).

    The wire is a private duplicate of fd 1; fd 1 itself points at stderr while
    the proxy runs, so nothing else printed in this process can corrupt it.
    stdin is read by a daemon thread on a duplicate of fd 0, so a proxy whose
    server exited can end while the client still holds the pipe open.
    """
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
    token = anyio.lowlevel.current_token()

    def deliver(item: SessionMessage | Exception | None) -> bool:
        try:
            if item is None:
                anyio.from_thread.run_sync(read_writer.close, token=token)
            else:
                anyio.from_thread.run(read_writer.send, item, token=token)
            return True
        except Exception:  # noqa: BLE001 - the proxy is gone (stream closed, loop finished): stop reading
            return False

    threading.Thread(target=_read_lines, args=(in_fd, deliver), name="sekuire-mcp-stdin", daemon=True).start()

    async def writer() -> None:
        async with write_reader:
            async for item in write_reader:
                line = item.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                try:
                    await anyio.to_thread.run_sync(_write_all, out_fd, line.encode("utf-8"))
                except OSError as exc:  # the client closed its end: the relay sees a broken stream
                    logger.debug("the MCP client stopped reading: %s", exc)
                    return

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(writer)
            try:
                yield read_stream, write_stream
            finally:
                write_stream.close()  # the writer flushes what was accepted, then ends
                read_stream.close()
    finally:
        os.dup2(saved_stdout, 1)
        for fd in (saved_stdout, out_fd):
            os.close(fd)
        # in_fd stays open: the reader thread may still be blocked on it until the process exits.


def _read_lines(fd: int, deliver: Callable[[SessionMessage | Exception | None], bool]) -> None:
    buffer = b""
    while True:
        try:
            chunk = os.read(fd, _READ_CHUNK)
        except OSError:
            chunk = b""
        if not chunk:
            deliver(None)
            return
        *lines, buffer = (buffer + chunk).split(b"\n")
        for line in lines:
            if line.strip() and not deliver(_parse(line)):
                return


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        return ValueError(str(exc).splitlines()[0])


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def serve_stdio(
    gate: ToolGate,
    command: str,
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    deny_as: DenyStyle = "error",
    on_started: Callable[[], None] | None = None,
) -> Side:
    """Start the MCP server ``command args`` and proxy this process's stdio to it until one side closes.

    The server inherits this process's whole environment (``env`` replaces it)
    and its stderr; ``on_started`` runs once it is running. Raises
    :class:`MCPProxyError` when the server cannot be started.
    """
    parameters = StdioServerParameters(command=command, args=args, env=dict(os.environ) if env is None else env, cwd=cwd)
    proxy = MCPProxy(gate, deny_as=deny_as)
    async with AsyncExitStack() as stack:
        try:
            server = await stack.enter_async_context(stdio_client(parameters))
        except OSError as exc:
            raise MCPProxyError(f"cannot start the MCP server {command!r}: {exc.strerror or exc}") from None
        if on_started is not None:
            on_started()
        client = await stack.enter_async_context(_process_stdio())
        return await proxy.run(client, server)
