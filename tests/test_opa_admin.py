"""OPA's management plane through opa-python-client (issue 12.8), against real OPA on loopback.

- ``sekuire opa push`` puts a compiled policy into an OPA started with no
  bundle; decisions through the ``opa`` engine then equal the embedded
  engine's, action by action;
- an OPA whose bundle owns the workspace refuses the push (nothing changes);
- ``sekuire opa status`` and ``OPAEngine.health``/``wait_until_ready`` see
  health, bundle activation and each bundle's revision.
"""

from __future__ import annotations

import json

import pytest
from sekuire.compiler import load_policy
from sekuire.compiler.rego.compile import compile_policy
from sekuire.runtime import EmbeddedEngine, OPAEngine, PolicyEnforcer
from sekuire.runtime.errors import EngineUnavailable
from sekuire.runtime.opa_admin import module_order

from .conftest import OPAServer, free_port
from .security_support import serve_bundles, signed_bundle
from .test_opa_integration import CODING, KEYRING, cli

ACTIONS = [
    {"type": "tool", "name": "web_search"}, {"type": "tool", "name": "file_delete"}, {"type": "tool", "name": "shell"},
    {"type": "network", "host": "api.openai.com"}, {"type": "network", "host": "evil.anthropic.com"},
    {"type": "filesystem", "path": "/workspace/a.txt"}, {"type": "filesystem", "path": "/workspace/secrets/k.md"},
    {"type": "model", "name": "gpt-4o"}, {"type": "model", "name": "gpt-3.5-turbo"}, {"type": "api", "name": "openai"},
]


def test_push_then_decide_like_the_embedded_engine(opa_bin, capsys):
    policy = load_policy(CODING, KEYRING)
    with OPAServer(opa_bin, []) as opa:
        assert cli("opa", "push", "--url", opa.url, "--file", CODING, "--keyring", KEYRING) == 0
        assert "Pushed 9 modules and the data of workspace ws_abc123" in capsys.readouterr().out
        with OPAEngine(opa.url) as remote, EmbeddedEngine.from_policy(policy) as local:
            theirs = PolicyEnforcer(policy, engine=remote, cache=False)
            ours = PolicyEnforcer(policy, engine=local, cache=False)
            for action in ACTIONS:
                assert theirs.check(action) == ours.check(action), action
            assert {d.allow for d in map(ours.check, ACTIONS)} == {True, False}
        assert cli("opa", "status", "--url", opa.url, "--format", "json") == 0
        report = json.loads(capsys.readouterr().out)
    assert report["healthy"] and report["bundles"] == {}
    assert "sekuire/workspaces/ws_abc123/workspace.rego" in report["policies"]


def test_a_bundle_driven_opa_refuses_the_push(opa_bin, tmp_path, capsys):
    policy = load_policy(CODING, KEYRING)
    revision = compile_policy(policy).revision
    with serve_bundles(opa_bin, {"coding": signed_bundle(policy)}, tmp_path) as opa:
        assert cli("opa", "push", "--url", opa.url, "--file", CODING, "--keyring", KEYRING) != 0
        assert "refused" in capsys.readouterr().err
        assert cli("opa", "status", "--url", opa.url) == 0
        out = capsys.readouterr().out
        assert f"revision {revision}" in out and "healthy, bundles activated" in out
        with OPAEngine(opa.url) as engine:
            assert engine.health() and engine.health(bundles=True)
            engine.wait_until_ready(bundles=True, timeout=5)


def test_health_of_an_opa_that_is_not_there():
    with OPAEngine(f"http://127.0.0.1:{free_port()}", timeout=0.5) as engine:
        assert not engine.health()
        with pytest.raises(EngineUnavailable, match="not healthy"):
            engine.wait_until_ready(bundles=False, timeout=0.6)
    assert cli("opa", "status", "--url", f"http://127.0.0.1:{free_port()}") == 1


def test_modules_come_after_the_modules_they_import():
    compiled = compile_policy(load_policy(CODING, KEYRING))
    order = module_order(compiled.modules)
    assert sorted(order) == sorted(compiled.modules)
    position = {path.rsplit("/", 1)[-1]: index for index, path in enumerate(order)}
    assert position["lib.rego"] < position["tools.rego"] < position["workspace.rego"]
    assert position["models.rego"] < position["manifest.rego"] < position["workspace.rego"]
