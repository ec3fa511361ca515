"""Decision logs in OPA's event format: a JSON-lines file, gzip batches POSTed to a real loopback server."""

from __future__ import annotations

import gzip
import http.server
import json
import logging
import threading
import uuid
from datetime import datetime
from typing import Any

import pytest
from sekuire.runtime import (
    DecisionLogger,
    FileSink,
    HTTPSink,
    LoggingSink,
    PolicyEnforcer,
    PolicyViolationError,
)
from sekuire.runtime.decision_log import decision_event

from .conftest import free_port
from .enforcer_fixtures import signed_variant


def test_event_has_opas_fields():
    event = decision_event(path="a/b", input={"x": 1}, result={"allow": True}, bundles={"ws": "rev-1"})
    assert uuid.UUID(event["decision_id"]).version == 4
    assert datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).tzinfo is not None
    assert event["bundles"] == {"ws": {"revision": "rev-1"}}
    assert (event["path"], event["input"], event["result"]) == ("a/b", {"x": 1}, {"allow": True})
    assert {"id", "version"} <= set(event["labels"])
    failed = decision_event(path="a/b", input={}, error="OPA is down")
    assert "result" not in failed and failed["error"]["message"] == "OPA is down"
    assert failed["decision_id"] != event["decision_id"]


def test_file_sink_records_every_decision(make_enforcer, tmp_path):
    log = tmp_path / "decisions.jsonl"
    enforcer = make_enforcer(decision_log=FileSink(log), agent_id="bot")
    enforcer.enforce_tool("web_search")
    enforcer.enforce_tool("web_search")  # a cache hit is a decision too
    with pytest.raises(PolicyViolationError):
        enforcer.enforce_network("evil.anthropic.com")
    enforcer.enforce_rate_limit("token", 5)
    enforcer.engine.close()
    with pytest.raises(PolicyViolationError):
        enforcer.enforce_api("stripe")
    enforcer.decision_log.close()

    events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [e["input"]["action"]["type"] for e in events] == ["tool", "tool", "network", "rate_limit", "api"]
    assert all(e["path"] == "sekuire/workspaces/ws_abc123/decision" for e in events)
    assert all(e["input"]["context"] == {"agent": "bot", "workspace": "ws_abc123"} for e in events)
    assert [e.get("result", {}).get("allow") for e in events] == [True, True, False, True, None]
    assert events[2]["result"]["violations"][0]["rule"] == "network.blocked"
    assert events[3]["input"]["action"]["usage"] == {"minute": 0, "hour": 0}
    assert "closed" in events[4]["error"]["message"]
    assert len({e["decision_id"] for e in events}) == len(events)
    assert all(rev["revision"].startswith("policy_xyz@v1-") for rev in events[0]["bundles"].values())


class _LogService(http.server.BaseHTTPRequestHandler):
    """A decision-log service: records each gzip upload; answers from a script of statuses (the last repeats)."""

    uploads: list[tuple[dict[str, str], list[dict[str, Any]]]]
    statuses: list[int]

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if status == 200:
            self.uploads.append((dict(self.headers) | {"path": self.path}, json.loads(gzip.decompress(body))))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture()
def log_service(http_server, tmp_path):
    def start(*statuses: int) -> tuple[str, list[tuple[dict[str, str], list[dict[str, Any]]]]]:
        handler = type("Service", (_LogService,), {"uploads": [], "statuses": list(statuses) or [200]})
        return http_server(tmp_path, handler), handler.uploads

    return start


def test_http_sink_posts_gzip_batches(make_enforcer, log_service):
    url, uploads = log_service()
    sink = HTTPSink(url, batch_size=3, flush_interval=0.05)
    enforcer = make_enforcer(decision_log=sink)
    for name in ("web_search", "file_read", "calc", "shell", "github:create_issue"):
        enforcer.check({"type": "tool", "name": name})
    sink.close()
    assert sink.sent == 5 and sink.dropped == 0
    assert all(len(batch) <= 3 for _, batch in uploads)
    headers = uploads[0][0]
    assert headers["path"] == "/logs" and headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"] == "application/json"
    events = [event for _, batch in uploads for event in batch]
    assert [e["input"]["action"]["name"] for e in events] == ["web_search", "file_read", "calc", "shell", "github:create_issue"]
    assert [e["result"]["allow"] for e in events] == [True, True, False, False, True]


def test_http_sink_retries_a_failed_upload(log_service):
    url, uploads = log_service(500, 503, 200)
    sink = HTTPSink(url, resource="v1/decisions", flush_interval=0.01)
    sink.emit(decision_event(path="p", input={}, result={"allow": True}))
    assert sink.flush(timeout=10)
    sink.close()
    assert sink.sent == 1 and uploads[0][0]["path"] == "/v1/decisions"


def test_http_sink_drops_and_counts_on_overflow():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: every upload fails
    sink = HTTPSink(url, buffer_size=5, batch_size=2, flush_interval=0.01)
    for _ in range(20):
        sink.emit(decision_event(path="p", input={}, result={"allow": True}))
    assert sink.dropped == 15
    sink.close(timeout=0.5)
    assert sink.dropped == 20 and sink.sent == 0
    sink.emit(decision_event(path="p", input={}, result={}))
    assert sink.dropped == 21


def test_failing_sink_never_changes_a_decision(make_enforcer, tmp_path, caplog):
    broken = FileSink(tmp_path)  # a directory: every write fails
    logger = DecisionLogger(broken, FileSink(tmp_path / "ok.jsonl"))
    enforcer = make_enforcer(decision_log=logger)
    assert enforcer.enforce_tool("web_search").allowed
    with pytest.raises(PolicyViolationError):
        enforcer.enforce_tool("shell")
    assert logger.errors == 2 and "FileSink failed" in caplog.text
    assert len((tmp_path / "ok.jsonl").read_text().splitlines()) == 2


def test_audit_logging_policy_logs_by_default(policy, tmp_path, vector_seed, vector_keyring, caplog):
    caplog.set_level(logging.INFO, logger="sekuire.runtime.decision_log")
    audited = PolicyEnforcer(policy)
    assert policy.content.compliance.require_audit_logging and isinstance(audited.decision_log.sinks[0], LoggingSink)
    audited.enforce_tool("web_search")
    (record,) = [r for r in caplog.records if r.name == "sekuire.runtime.decision_log"]
    assert json.loads(record.getMessage())["input"]["action"] == {"type": "tool", "name": "web_search"}
    quiet = signed_variant(tmp_path, vector_seed, vector_keyring, version="2", audit=False)
    assert PolicyEnforcer(quiet).decision_log is None
    assert PolicyEnforcer(quiet, decision_log=FileSink(tmp_path / "x.jsonl")).decision_log is not None


def test_file_sink_lines_stay_whole_under_threads(tmp_path):
    sink = FileSink(tmp_path / "d.jsonl")
    event = decision_event(path="p", input={"blob": "x" * 10_000}, result={"allow": True})
    threads = [threading.Thread(target=lambda: [sink.emit(event) for _ in range(50)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sink.close()
    lines = (tmp_path / "d.jsonl").read_text().splitlines()
    assert len(lines) == 400 and all(json.loads(line)["input"]["blob"] == "x" * 10_000 for line in lines)
