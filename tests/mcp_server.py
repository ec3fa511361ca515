"""A small real MCP server for the MCP gate tests: three tools, a resource and a prompt, over stdio.

Built with the official SDK's ``MCPServer`` (FastMCP in SDK 1.x). Every tool call
is appended as one JSON line to the file named by ``$SEKUIRE_TEST_MCP_CALLS``
(when set), so a test can prove which calls reached the server and which did not.
"""

from __future__ import annotations

import json
import os

from mcp.server import MCPServer

server = MCPServer("sekuire-test-server", instructions="A test server: echo, add and delete_files.")


def _record(tool: str, arguments: dict[str, object]) -> None:
    path = os.environ.get("SEKUIRE_TEST_MCP_CALLS")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    _record("echo", {"text": text})
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    _record("add", {"a": a, "b": b})
    return a + b


@server.tool()
def delete_files(path: str) -> str:
    """Delete every file under a path (the policy denies this one)."""
    _record("delete_files", {"path": path})
    return f"deleted everything under {path}"


@server.resource("greeting://{name}")
def greeting(name: str) -> str:
    """Greet someone by name."""
    return f"Hello, {name}!"


@server.prompt()
def summarize(topic: str) -> str:
    """Ask for a summary of a topic."""
    return f"Summarize the latest news about {topic}."


if __name__ == "__main__":
    server.run()
