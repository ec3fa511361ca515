"""Decision logs that match OPA's (issue 12.7): one collector receives OPA's own events and the runtime's.

Real OPA pulls the signed bundle of the vector policy (the config ``sekuire
opa-config`` writes) and uploads its decision logs to a collector on loopback
(a real HTTP server that gunzips and keeps what is posted), masking with a
``system.log`` module written by :func:`mask_rego` from the same rules the
runtime's :class:`DecisionLogger` applies. Then:

- one decision through the ``opa`` engine yields two events (OPA's, the
  enforcer's) with one ``decision_id``;
- the embedded engine's event for the same action has OPA's shape field by
  field: the same keys with the same types, the same labels, the same bundle
  name and revision, path, input (masked alike), result, ``erased`` and
  ``masked``; its metrics use OPA's names.
"""

from __future__ import annotations

import gzip
import http.server
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sekuire.runtime import DecisionLogger, EmbeddedEngine, HTTPSink, OPAEngine, PolicyEnforcer
from sekuire.runtime.masking import Mask, mask_rego
from sekuire.runtime.errors import InvalidActionError

from .conftest import static_http_server, wait_until
from .test_opa_integration import CODING, KEYRING, cli

MASK = ["/input/action/args/card", {"op": "upsert", "path": "/input/context/agent", "value": "masked"}]
LABELS = {"team": "agents"}
ACTIONS = [{"type": "tool", "name": "web_search", "args": {"card": "4111111111111111", "query": "opa"}},
           {"type": "tool", "name": "shell"}]


class _Collector(http.server.BaseHTTPRequestHandler):
    events: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.events.extend(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture()
def collector(tmp_path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    handler = type("Collector", (_Collector,), {"events": []})
    with static_http_server(tmp_path, handler) as url:
        yield url, handler.events


def _opa_config(tmp_path: Path, rsa_keys, site_url: str, logs_url: str) -> Path:
    config = tmp_path / "opa.yaml"
    assert cli("opa-config", "--service-url", site_url, "--workspace", "ws_abc123", "--verification-key",
               rsa_keys[1], "--out", config) == 0
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    document["services"]["collector"] = {"url": logs_url}
    document["decision_logs"] = {"service": "collector", "reporting": {"min_delay_seconds": 1, "max_delay_seconds": 1}}
    document["labels"] = LABELS
    config.write_text(yaml.safe_dump(document), encoding="utf-8")
    return config


def _of(events: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [e for e in events if all(e["labels"].get(k) == v for k, v in match.items())]


def test_one_decision_one_id_and_the_same_shape_as_opas(tmp_path, rsa_keys, opa_server, collector):
    logs_url, events = collector
    site = tmp_path / "site"
    assert cli("publish", "--site", site, "--file", CODING, "--keyring", KEYRING, "--signing-key", rsa_keys[0]) == 0
    (tmp_path / "mask.rego").write_text(mask_rego(MASK), encoding="utf-8")
    with static_http_server(site) as site_url:
        config = _opa_config(tmp_path, rsa_keys, site_url, logs_url)
        opa = opa_server(["--config-file", str(config), str(tmp_path / "mask.rego")]).start(health_query="?bundles")
        from sekuire.compiler import load_policy

        policy = load_policy(CODING, KEYRING)
        sink = HTTPSink(logs_url, flush_interval=0.2)
        logger = DecisionLogger(sink, labels=LABELS, mask=MASK)
        with OPAEngine(opa.url) as remote, EmbeddedEngine.from_policy(policy) as local:
            for engine in (remote, local):
                enforcer = PolicyEnforcer(policy, engine=engine, cache=False, decision_log=logger, agent_id="bot")
                for action in ACTIONS:
                    enforcer.check(action)
            logger.close()
            assert wait_until(lambda: len(events) >= 3 * len(ACTIONS), timeout=30)
            opa.stop()
        version = remote.version
    # the runtime's events are requested by the agent (OPA's name the client address, at info log level)
    theirs = [e for e in events if e.get("requested_by") != "bot"]
    assert len(theirs) == len(ACTIONS) and version.startswith("1.") and _of(theirs, version=version) == theirs
    ours = [e for e in events if e.get("requested_by") == "bot"]
    through_opa = [e for e in ours if e["labels"]["version"] == version]
    embedded = [e for e in ours if e["labels"]["version"].startswith("regorus-")]
    assert len(through_opa) == len(embedded) == len(ACTIONS)

    # one decision through OPA: OPA's event and the enforcer's share the decision_id
    assert sorted(e["decision_id"] for e in through_opa) == sorted(e["decision_id"] for e in theirs)

    by_action = {e["input"]["action"]["name"]: e for e in theirs}
    for mine in embedded:
        opas = by_action[mine["input"]["action"]["name"]]
        # OPA adds requested_by and req_id only when it logs requests (info level; these tests run it at error)
        optional = {"warn_only", "requested_by", "req_id"}
        assert set(mine) - optional == set(opas) - optional, (sorted(mine), sorted(opas))
        for key in opas:
            assert type(mine[key]) is type(opas[key]), key
        assert mine["labels"].keys() == opas["labels"].keys() and mine["labels"]["team"] == "agents"
        for key in ("bundles", "path", "input", "result", "erased", "masked"):
            assert mine.get(key) == opas.get(key), key
        assert mine["bundles"] == {"sekuire-ws_abc123": {"revision": mine["bundles"]["sekuire-ws_abc123"]["revision"]}}
        assert set(mine["metrics"]) <= set(opas["metrics"]) and mine["metrics"]["timer_rego_query_eval_ns"] > 0
        datetime.fromisoformat(mine["timestamp"].replace("Z", "+00:00"))
        assert mine["decision_id"] != opas["decision_id"]
    # the secret never reached the collector, from anyone
    assert "4111111111111111" not in json.dumps(events)
    card_erased = [e for e in events if e["input"]["action"]["name"] == "web_search"]
    assert all(e["erased"] == ["/input/action/args/card"] and e["masked"] == ["/input/context/agent"] for e in card_erased)


def test_mask_rules_follow_opas_semantics():
    mask = Mask(["/input/a", "/input/list/0", "/input/missing", {"op": "remove", "path": "/result/x"},
                 {"op": "upsert", "path": "/input/deep/er", "value": 1}, {"op": "upsert", "path": "/input/b", "value": "*"}])
    event = {"input": {"a": 1, "b": "secret", "list": [1, 2]}, "result": True}
    masked = mask.apply(event)
    assert masked["input"] == {"b": "*", "list": [2], "deep": {"er": 1}}
    assert masked["erased"] == ["/input/a", "/input/list/0"] and masked["masked"] == ["/input/b", "/input/deep/er"]
    assert event["input"] == {"a": 1, "b": "secret", "list": [1, 2]}  # the caller's copy is untouched
    for bad in ("input/a", "/labels/id", "/input", {"op": "upsert", "path": "/input/a"}, {"op": "drop", "path": "/input/a"}, 3):
        with pytest.raises(InvalidActionError):
            Mask([bad])  # type: ignore[list-item]
