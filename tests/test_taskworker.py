"""TaskWorker against the loopback test backend: a denied task's handler never runs, results are posted back."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sekuire.runtime import OPAEngine, PolicyEnforcer, Task, TaskResult, TaskWorker
from sekuire.runtime.client import AsyncPolicyClient, PolicyClient
from sekuire.runtime.gateway import PolicyGateway

from .backend_server import signed_policy
from .conftest import free_port, wait_until

WS = "ws_abc123"
AGENT = "agent_7"


class Recorder:
    """Handlers that record their calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def handler(self, name: str, result=None, error: Exception | None = None):
        def run(args: dict):
            with self.lock:
                self.calls.append((name, args))
            if error is not None:
                raise error
            return result

        return run


@pytest.fixture()
def gateway(url, vector_keyring):
    with PolicyClient(url, keyring=vector_keyring) as client:
        gateway = PolicyGateway(client, WS)
        gateway.initialize()
        yield gateway
        gateway.close()


@pytest.fixture()
def recorder() -> Recorder:
    return Recorder()


def _worker(gateway, recorder, **kwargs) -> TaskWorker:
    handlers = {
        "github:create_issue": recorder.handler("create_issue", {"number": 7}),
        "github:delete_repo": recorder.handler("delete_repo", "deleted"),
        "web_search": recorder.handler("web_search", error=ValueError("token=sk-SECRET rejected")),
    }
    return TaskWorker(gateway, handlers, agent_id=AGENT, **kwargs)


def test_an_allowed_task_runs_and_its_result_is_posted(gateway, backend, recorder):
    backend.add_task(WS, AGENT, {"id": "t1", "capability": "github:create_issue", "args": {"title": "Broken build"}})
    results = _worker(gateway, recorder).poll()
    assert results == [TaskResult("t1", "done", result={"number": 7})]
    assert recorder.calls == [("create_issue", {"title": "Broken build"})]
    assert backend.results == {"t1": {"status": "done", "result": {"number": 7}}}


def test_a_denied_task_is_reported_with_rule_and_message_and_its_handler_never_runs(gateway, backend, recorder):
    backend.add_task(WS, AGENT, {"id": "t2", "capability": "github:delete_repo", "args": {"repo": "prod"}})
    _worker(gateway, recorder).poll()
    assert recorder.calls == []
    posted = backend.results["t2"]
    assert posted["status"] == "denied" and posted["rule"] == "tool.not_allowed"
    assert "github:delete_repo" in posted["message"]
    assert "result" not in posted


def test_a_handler_exception_is_failed_without_its_text(gateway, backend, recorder):
    backend.add_task(WS, AGENT, {"id": "t3", "capability": "web_search", "args": {}})
    _worker(gateway, recorder).poll()
    assert backend.results["t3"] == {"status": "failed", "message": "handler raised ValueError"}
    assert len(recorder.calls) == 1


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ({"id": "t4", "capability": "file_read", "args": {}}, "no handler for capability file_read"),  # allowed by file_*
        ({"id": "t5", "capability": "github:create_issue", "args": ["x"]}, "malformed task"),
        ({"id": "t6", "capability": 42}, "malformed task"),
        ({"id": "t7", "capability": "bad\x00name", "args": {}}, "invalid capability"),
    ],
)
def test_bad_tasks_fail_without_running_a_handler(gateway, backend, recorder, task, message):
    backend.add_task(WS, AGENT, task)
    _worker(gateway, recorder).poll()
    posted = backend.results[task["id"]]
    assert posted["status"] == "failed"
    assert message in posted["message"]
    assert recorder.calls == []


def test_a_task_without_a_usable_id_is_skipped(gateway, backend, recorder):
    backend.add_task(WS, AGENT, {"capability": "github:create_issue"})
    backend.add_task(WS, AGENT, {"id": "", "capability": "github:create_issue"})
    backend.add_task(WS, AGENT, {"id": "..", "capability": "github:create_issue"})
    backend.add_task(WS, AGENT, {"id": "x" * 201, "capability": "github:create_issue"})
    backend.add_task(WS, AGENT, {"id": "ok", "capability": "github:create_issue"})
    assert [r.task_id for r in _worker(gateway, recorder).poll()] == ["ok"]
    assert list(backend.results) == ["ok"]


def test_a_task_id_is_one_path_segment_of_the_result_url(gateway, backend, recorder):
    backend.add_task(WS, AGENT, {"id": "a/b?c#d", "capability": "github:create_issue"})
    _worker(gateway, recorder).poll()
    assert list(backend.results) == ["a/b?c#d"]
    assert backend.seen("POST", "/tasks/a%2Fb%3Fc%23d/result")


def test_a_result_that_is_not_json_fails(gateway, backend):
    worker = TaskWorker(gateway, {"github:create_issue": lambda args: {1, 2}}, agent_id=AGENT)
    backend.add_task(WS, AGENT, {"id": "t8", "capability": "github:create_issue", "args": {}})
    worker.poll()
    assert backend.results["t8"]["status"] == "failed"
    assert "not JSON" in backend.results["t8"]["message"]


def test_an_engine_failure_denies_and_runs_nothing(url, vector_keyring, backend, recorder):
    dead = f"http://127.0.0.1:{free_port()}"
    with PolicyClient(url, keyring=vector_keyring) as client:
        gateway = PolicyGateway(client, WS, enforcer_factory=lambda p: PolicyEnforcer(p, engine=OPAEngine(dead, timeout=1)))
        gateway.initialize()
        backend.add_task(WS, AGENT, {"id": "t9", "capability": "github:create_issue", "args": {}})
        _worker(gateway, recorder).poll()
    assert backend.results["t9"]["status"] == "denied"
    assert backend.results["t9"]["rule"] == "engine.unavailable"
    assert recorder.calls == []


def test_results_that_could_not_be_posted_are_posted_at_the_next_poll(gateway, backend, recorder):
    worker = _worker(gateway, recorder)
    backend.add_task(WS, AGENT, {"id": "t10", "capability": "github:create_issue", "args": {}})
    backend.result_status = 503
    worker.poll()
    assert backend.results == {}
    backend.result_status = None
    assert worker.poll() == []
    assert backend.results == {"t10": {"status": "done", "result": {"number": 7}}}
    assert len(recorder.calls) == 1  # posted again, not run again


def test_the_gateway_decides_with_the_policy_it_enforces_now(gateway, backend, recorder, envelope_vectors, vector_seed):
    worker = _worker(gateway, recorder)
    assert worker.run_task(Task("a", "github:delete_repo")).status == "denied"
    v2 = signed_policy(envelope_vectors["valid"], vector_seed, version="2",
                       edit_content=lambda c: c["agent"]["capabilities"]["allowed_tools"].append("github:delete_repo"))
    backend.set_policy(v2)
    assert gateway.on_heartbeat_response({"active_policy_hash": v2["hash"]})
    assert worker.run_task(Task("b", "github:delete_repo")) == TaskResult("b", "done", result="deleted")


def test_a_thread_worker_runs_submitted_tasks_and_polls_on_its_own(gateway, backend, recorder):
    backend.add_task(WS, AGENT, {"id": "polled", "capability": "github:create_issue", "args": {"n": 1}})
    with _worker(gateway, recorder, poll_interval=0.1) as worker:
        allowed = worker.submit("github:create_issue", {"n": 2}, task_id="local")
        denied = worker.submit("github:delete_repo", {"repo": "prod"})
        assert allowed.result(timeout=20) == TaskResult("local", "done", result={"number": 7})
        refused = denied.result(timeout=20)
        assert (refused.status, refused.rule) == ("denied", "tool.not_allowed")
        assert wait_until(lambda: "polled" in backend.results)
        backend.add_task(WS, AGENT, {"id": "later", "capability": "github:delete_repo", "args": {}})
        assert wait_until(lambda: "later" in backend.results)
    assert backend.results["polled"]["status"] == "done"
    assert backend.results["later"]["status"] == "denied"
    assert "local" not in backend.results  # an in-process task answers its future, not the backend
    assert sorted(name for name, _ in recorder.calls) == ["create_issue", "create_issue"]


def test_an_asyncio_worker_with_async_handlers(url, vector_keyring, backend):
    calls: list[dict] = []

    async def create_issue(args: dict) -> dict:
        calls.append(args)
        await asyncio.sleep(0)
        return {"number": len(calls)}

    async def scenario() -> tuple[TaskResult, TaskResult]:
        async with AsyncPolicyClient(url, keyring=vector_keyring) as client:
            gateway = PolicyGateway(client, WS)
            await gateway.ainitialize()
            worker = TaskWorker(gateway, {"github:create_issue": create_issue, "github:delete_repo": create_issue},
                                agent_id=AGENT, poll_interval=0.1)
            backend.add_task(WS, AGENT, {"id": "p1", "capability": "github:create_issue", "args": {"a": 1}})
            await worker.astart()
            try:
                done = await asyncio.wrap_future(worker.submit("github:create_issue", {"b": 2}))
                denied = await asyncio.wrap_future(worker.submit("github:delete_repo", {}))
                while "p1" not in backend.results:
                    await asyncio.sleep(0.02)
            finally:
                await worker.astop()
                gateway.close()
            return done, denied

    done, denied = asyncio.run(scenario())
    assert done.status == "done"
    assert (denied.status, denied.rule) == ("denied", "tool.not_allowed")
    assert backend.results["p1"]["status"] == "done"
    assert sorted(map(str, calls)) == ["{'a': 1}", "{'b': 2}"]
