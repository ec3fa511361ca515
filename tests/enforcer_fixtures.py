"""Fixtures of the enforcer, engine and decision-log suites: the vector policy compiled, a real OPA serving it,
and an enforcer factory parametrised over both engines. Registered in conftest.py as a pytest plugin.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sekuire.compiler import Keyring, Policy, load_policy, sign_document
from sekuire.compiler.rego.compile import CompiledPolicy, compile_policy
from sekuire.runtime import EmbeddedEngine, OPAEngine, PolicyEnforcer

from .conftest import VECTOR_POLICY, OPAServer

__all__ = ["compiled", "engine_kind", "make_enforcer", "opa_url", "policy", "signed_variant", "write_bundle_dir"]


@pytest.fixture()
def policy(vector_keyring) -> Policy:
    return load_policy(VECTOR_POLICY, keyring=vector_keyring)


@pytest.fixture()
def compiled(policy) -> CompiledPolicy:
    return compile_policy(policy)


def write_bundle_dir(compiled: CompiledPolicy, directory: Path) -> Path:
    """The compiled policy as a bundle directory for ``opa run --bundle DIR``."""
    for name, source in compiled.modules.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    workspace_data = compiled.data["sekuire"]["workspaces"][compiled.workspace_id]
    (directory / compiled.root).mkdir(parents=True, exist_ok=True)
    (directory / compiled.root / "data.json").write_text(json.dumps(workspace_data), encoding="utf-8")
    (directory / ".manifest").write_text(json.dumps(compiled.manifest), encoding="utf-8")
    return directory


def signed_variant(
    tmp_path: Path, seed: bytes, keyring, *, version: str, denied_tools: list[str] | None = None, audit: bool = True
) -> Policy:
    """The vector policy with another version (and denied tools, audit logging), signed with the vector key."""
    document = json.loads(VECTOR_POLICY.read_text(encoding="utf-8"))
    document["version"] = version
    if denied_tools is not None:
        document["content"]["agent"]["capabilities"]["denied_tools"] = denied_tools
    document["content"]["compliance"]["require_audit_logging"] = audit
    path = tmp_path / f"policy-v{version}.json"
    path.write_text(json.dumps(sign_document(document, seed, document["signing_key_id"])), encoding="utf-8")
    return load_policy(path, keyring=keyring)


@pytest.fixture(scope="module")
def opa_url(opa_bin, envelope_vectors, tmp_path_factory) -> Iterator[str]:
    """One real OPA per test module serving the vector policy (tests that stop OPA start their own)."""
    key = envelope_vectors["key"]
    keyring = Keyring(keys={key["key_id"]: bytes.fromhex(key["public_key_hex"])})
    compiled = compile_policy(load_policy(VECTOR_POLICY, keyring=keyring))
    with OPAServer(opa_bin, ["--bundle", str(write_bundle_dir(compiled, tmp_path_factory.mktemp("bundle")))]) as server:
        yield server.url


@pytest.fixture(params=["embedded", "opa"])
def engine_kind(request) -> str:
    return request.param


@pytest.fixture()
def make_enforcer(engine_kind, policy, request):
    """``make_enforcer(**kwargs)``: an enforcer for the vector policy on the parametrised engine."""
    enforcers: list[PolicyEnforcer] = []

    def make(**kwargs: Any) -> PolicyEnforcer:
        if engine_kind == "embedded":
            engine = EmbeddedEngine.from_policy(policy)
        else:
            engine = OPAEngine(request.getfixturevalue("opa_url"))
        enforcer = PolicyEnforcer(policy, engine=engine, **kwargs)
        enforcers.append(enforcer)
        return enforcer

    yield make
    for enforcer in enforcers:
        enforcer.engine.close()
