"""A real A2A peer agent for tests, built with the official SDK and served by uvicorn on 127.0.0.1.

The peer's executor answers each task with a completed Task whose artifact
says what it was asked (``did <capability> with <args>``). The ASGI app is
wrapped to record every request (method, path, JSON-RPC method), so tests can
tell what reached the peer and what did not.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from a2a.helpers.proto_helpers import get_data_parts, new_text_part
from a2a.server.agent_execution.agent_executor import AgentExecutor
from a2a.server.agent_execution.context import RequestContext
from a2a.server.events.event_queue import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks.inmemory_task_store import InMemoryTaskStore
from a2a.server.tasks.task_updater import TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Task,
    TaskState,
    TaskStatus,
)
from starlette.applications import Starlette

from .conftest import free_port, wait_until

__all__ = ["Peer", "a2a_peer"]


class _Executor(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        assert message is not None and context.task_id and context.context_id
        await event_queue.enqueue_event(Task(id=context.task_id, context_id=context.context_id,
                                             status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED), history=[message]))
        updater = TaskUpdater(event_queue=event_queue, task_id=context.task_id, context_id=context.context_id)
        asked = get_data_parts(message.parts)[0]
        await updater.add_artifact(parts=[new_text_part(f"did {asked['capability']} with {json.dumps(asked['args'])}")],
                                   name="result", last_chunk=True)
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


@dataclass
class Peer:
    url: str
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)

    def rpc_methods(self) -> list[str | None]:
        return [method for verb, _, method in self.requests if verb == "POST"]


class _Recording:
    """ASGI wrapper: records each HTTP request (and its JSON-RPC method) before the app sees it."""

    def __init__(self, app: Any, peer: Peer) -> None:
        self.app = app
        self.peer = peer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        chunks = []
        while True:
            event = await receive()
            chunks.append(event.get("body", b""))
            if not event.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            method = json.loads(body).get("method") if body else None
        except ValueError:
            method = None
        self.peer.requests.append((scope["method"], scope["path"], method))
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


@contextlib.contextmanager
def a2a_peer(*, versions: tuple[str, ...] = ("1.0", "0.3"), rpc_host: str = "127.0.0.1") -> Iterator[Peer]:
    """A peer offering JSON-RPC in ``versions``, its interface URLs on ``rpc_host``; stopped on exit."""
    port = free_port()
    peer = Peer(f"http://127.0.0.1:{port}")
    card = AgentCard(
        name="Peer", description="Does what it is asked, and says so.", version="1.0.0",
        capabilities=AgentCapabilities(streaming=False), default_input_modes=["text"], default_output_modes=["text"],
        skills=[AgentSkill(id="do", name="Do", description="Does the task.", tags=["test"])],
        supported_interfaces=[AgentInterface(protocol_binding="JSONRPC", protocol_version=version,
                                             url=f"http://{rpc_host}:{port}/a2a/jsonrpc") for version in versions],
    )
    handler = DefaultRequestHandler(agent_executor=_Executor(), task_store=InMemoryTaskStore(), agent_card=card)
    routes = [*create_agent_card_routes(agent_card=card),
              *create_jsonrpc_routes(request_handler=handler, rpc_url="/a2a/jsonrpc", enable_v0_3_compat=True)]
    app = _Recording(Starlette(routes=routes), peer)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        if not wait_until(lambda: server.started):
            raise RuntimeError("the A2A peer did not start")
        yield peer
    finally:
        server.should_exit = True
        thread.join(timeout=10)
