"""OCI distribution (issue 12.1): real OPA pulls sekuire bundles from a real OCI registry on loopback and verifies them.

``crane registry serve`` (go-containerregistry, installed by ``make crane``)
is the registry; ``sekuire publish --oci`` pushes each workspace's signed
bundle with the oras client; ``sekuire opa-config --oci`` writes the config;
OPA pulls, verifies with each algorithm and answers. An artifact signed by
another key, or unsigned, is never activated.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ROOT, free_port, tool_or_skip, wait_until
from .test_opa_integration import CODING, KEYRING, RESEARCH, cli, query

DECISION = "sekuire/workspaces/ws_abc123/decision"


def _crane() -> str | None:
    for candidate in (str(ROOT / ".tools" / "bin" / "crane"), shutil.which("crane")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture()
def registry(tmp_path) -> Iterator[str]:
    """``crane registry serve`` on a loopback port of its own; stopped after the test."""
    crane = tool_or_skip(_crane(), "crane")
    port = free_port()
    log = open(tmp_path / "registry.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([crane, "registry", "serve", "--address", f"127.0.0.1:{port}"], stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        import httpx

        assert wait_until(lambda: _up(httpx, port), timeout=20), "the registry did not start"
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _up(httpx, port: int) -> bool:  # type: ignore[no-untyped-def]
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _keys(folder: Path, algorithm: str) -> tuple[Path, Path]:
    assert cli("keys", "generate", "--key-id", "default", "--algorithm", algorithm, "--out", folder / algorithm) == 0
    return folder / f"{algorithm}.pem", folder / f"{algorithm}.pub.pem"


def _answers(url: str) -> dict | None:
    try:
        return query(url, DECISION, {"type": "tool", "name": "file_delete"})
    except Exception:  # noqa: BLE001 - not activated
        return None


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_opa_pulls_verifies_and_answers_from_an_oci_registry(tmp_path, registry, opa_server, algorithm, capsys):
    private, public = _keys(tmp_path, algorithm)
    target = f"{registry}/fleet/sekuire:v1"
    assert cli("publish", "--oci", target, "--oci-plain-http", "--file", CODING, "--file", RESEARCH,
               "--keyring", KEYRING, "--signing-key", private, "--signing-alg", algorithm) == 0
    assert f"to {registry}/fleet/sekuire/ws_abc123:v1" in capsys.readouterr().out
    config = tmp_path / "opa.yaml"
    assert cli("opa-config", "--oci", target, "--oci-plain-http", "--workspace", "ws_abc123", "--workspace",
               "ws-research-eu", "--verification-key", public, "--signing-alg", algorithm, "--polling-min", "1",
               "--polling-max", "2", "--out", config) == 0
    with opa_server(["--config-file", str(config)]).start(health_query="?bundles") as opa:
        decision = _answers(opa.url)
        assert decision is not None and [v["rule"] for v in decision["violations"]] == ["tool.blocked"]
        research = query(opa.url, "sekuire/workspaces/ws-research-eu/decision", {"type": "tool", "name": "web_search"})
        assert "allow" in research


@pytest.mark.parametrize("how", ["another key", "unsigned"])
def test_an_artifact_the_fleet_key_did_not_sign_is_never_activated(tmp_path, registry, opa_server, how):
    _, public = _keys(tmp_path, "RS256")
    target = f"{registry}/fleet/sekuire:v1"
    if how == "another key":  # the same key id and algorithm, another key: the signature does not verify
        (tmp_path / "other").mkdir()
        other, _ = _keys(tmp_path / "other", "RS256")
        signing = ["--signing-key", other]
    else:
        signing = ["--allow-unsigned-bundles"]
    assert cli("publish", "--oci", target, "--oci-plain-http", "--file", CODING, "--keyring", KEYRING, *signing) == 0
    config = tmp_path / "opa.yaml"
    assert cli("opa-config", "--oci", target, "--oci-plain-http", "--workspace", "ws_abc123", "--verification-key",
               public, "--polling-min", "1", "--polling-max", "2", "--out", config) == 0
    opa = opa_server(["--config-file", str(config)]).start(wait_healthy=False)
    try:
        assert wait_until(opa.healthy, timeout=20)
        assert not wait_until(lambda: _answers(opa.url) is not None, timeout=4)
        assert not opa.healthy("?bundles")
    finally:
        opa.stop()


def test_bad_oci_references_are_refused(capsys, tmp_path):
    for reference in ("no-repository", "Registry/UPPER:tag", "r/x:bad tag"):
        assert cli("opa-config", "--oci", reference, "--workspace", "ws_abc123", "--allow-unsigned-bundles",
                   "--out", tmp_path / "x.yaml") != 0
        assert "--oci must be REGISTRY/REPOSITORY[:TAG]" in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()


def test_opa_config_refuses_eddsa_which_opas_config_cannot_take(tmp_path, opa_bin, capsys):
    """OPA verifies EdDSA bundles given --verification-key on its command line, but its config's keys refuse
    EdDSA and OPA exits: opa-config says so instead of writing that config."""
    _, public = _keys(tmp_path, "EdDSA")
    out = tmp_path / "opa.yaml"
    assert cli("opa-config", "--service-url", "http://127.0.0.1:9", "--workspace", "ws_abc123",
               "--verification-key", public, "--signing-alg", "EdDSA", "--out", out) != 0
    assert "refuse the algorithm" in capsys.readouterr().err and not out.exists()
    # what OPA does with such a config (written by hand)
    assert cli("opa-config", "--service-url", "http://127.0.0.1:9", "--workspace", "ws_abc123",
               "--verification-key", public, "--out", out) == 0
    out.write_text(out.read_text(encoding="utf-8").replace("algorithm: RS256", "algorithm: EdDSA"), encoding="utf-8")
    ran = subprocess.run([opa_bin, "run", "--server", "--addr", f"127.0.0.1:{free_port()}", "--config-file", str(out)],
                         capture_output=True, text=True, timeout=30)
    assert ran.returncode != 0 and "unsupported algorithm 'EdDSA'" in ran.stderr + ran.stdout
