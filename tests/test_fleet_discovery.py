"""Discovery end to end: real OPA started with only the bootstrap config from `opa-config --discovery` fetches the
signed discovery bundle `publish --discovery` wrote, takes every workspace bundle from it, verifies and answers.

Served from a static site on loopback and from a real OCI registry (`crane registry serve`); every server is
stopped by its fixture.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
import yaml
from sekuire.compiler.bundle.tarball import load_bundle
from sekuire.compiler.bundle.verify import verify_bundle
from sekuire.compiler.cli import main

from .conftest import ROOT, wait_until

EXAMPLES = ROOT / "policies" / "examples"
KEYRING = EXAMPLES / "keyring.json"
CODING = EXAMPLES / "coding-assistant.json"
RESEARCH = EXAMPLES / "research-agent.json"


def cli(*argv: object) -> int:
    return main([str(a) for a in argv])


def keys(folder: Path, name: str = "k") -> tuple[Path, Path]:
    assert cli("keys", "generate", "--key-id", "default", "--algorithm", "RS256", "--out", folder / name) == 0
    return folder / f"{name}.pem", folder / f"{name}.pub.pem"


def decide(url: str, ws: str, tool: str) -> dict:
    body = {"input": {"action": {"type": "tool", "name": tool}, "context": {"agent": "a"}}}
    response = httpx.post(f"{url}/v1/data/sekuire/workspaces/{ws}/decision", json=body, timeout=10)
    response.raise_for_status()
    return response.json().get("result", {})


def active(url: str, *workspaces: str) -> bool:
    return all(decide(url, ws, "web_search") for ws in workspaces)


def bootstrap(tmp_path: Path, public: Path, *where: object) -> Path:
    out = tmp_path / "bootstrap.yaml"
    assert cli("opa-config", *where, "--discovery", "--verification-key", public, "--polling-min", 1, "--polling-max", 2,
               "--persistence-directory", tmp_path / "opa-store", "--out", out) == 0
    return out


def test_opa_activates_the_workspaces_through_a_discovery_bundle_on_a_static_site(tmp_path, http_server, opa_server, capsys):
    private, public = keys(tmp_path)
    site = tmp_path / "site"
    assert cli("publish", "--site", site, "--discovery", "--file", CODING, "--file", RESEARCH, "--keyring", KEYRING,
               "--signing-key", private) == 0
    assert f"Discovery bundle: {site / 'discovery.tar.gz'}" in capsys.readouterr().out
    discovery = verify_bundle(load_bundle(site / "discovery.tar.gz"), key=public.read_bytes(), alg="RS256")
    config = load_bundle(site / "discovery.tar.gz").data["sekuire"]["discovery"]["config"]
    assert sorted(config) == ["bundles"]  # no keys, no services: the trust anchor stays in the bootstrap file
    assert config["bundles"]["sekuire-ws_abc123"]["resource"] == "bundles/ws_abc123.tar.gz"
    assert config["bundles"]["sekuire-ws_abc123"]["signing"] == {"keyid": "default"}
    assert ".manifest" in discovery.files

    url = http_server(site)
    boot = bootstrap(tmp_path, public, "--service-url", url)
    written = yaml.safe_load(boot.read_text())
    assert sorted(written) == ["discovery", "keys", "persistence_directory", "services"]
    assert written["discovery"]["resource"] == "discovery.tar.gz"
    assert written["discovery"]["signing"] == {"keyid": "default"}
    with opa_server(["--config-file", str(boot)]) as opa:
        assert wait_until(lambda: active(opa.url, "ws_abc123", "ws-research-eu"))
        assert decide(opa.url, "ws_abc123", "web_search")["allow"] is True
        assert [v["rule"] for v in decide(opa.url, "ws_abc123", "file_delete")["violations"]] == ["tool.blocked"]
        assert decide(opa.url, "ws-research-eu", "web_search")["allow"] is True
        assert opa.healthy("?bundles")


def test_opa_activates_the_workspaces_through_a_discovery_bundle_in_an_oci_registry(tmp_path, oci_registry, opa_server,
                                                                                    capsys):
    private, public = keys(tmp_path)
    reference = f"{oci_registry}/fleet/policies:prod"
    assert cli("publish", "--oci", reference, "--plain-http", "--discovery", "--file", CODING, "--file", RESEARCH,
               "--keyring", KEYRING, "--signing-key", private) == 0
    assert f"Pushed {reference} (sha256:" in capsys.readouterr().out
    boot = bootstrap(tmp_path, public, "--oci", reference, "--plain-http")
    assert yaml.safe_load(boot.read_text())["discovery"]["resource"] == reference
    with opa_server(["--config-file", str(boot)]) as opa:
        assert wait_until(lambda: active(opa.url, "ws_abc123", "ws-research-eu"))
        assert decide(opa.url, "ws_abc123", "file_delete")["allow"] is False


def test_a_discovery_bundle_signed_by_another_key_configures_nothing(tmp_path, http_server, opa_server):
    private, _ = keys(tmp_path, "attacker")
    _, public = keys(tmp_path, "fleet")
    site = tmp_path / "site"
    assert cli("publish", "--site", site, "--discovery", "--file", CODING, "--keyring", KEYRING,
               "--signing-key", private) == 0
    boot = bootstrap(tmp_path, public, "--service-url", http_server(site))
    server = opa_server(["--config-file", str(boot)])
    server.log_path = tmp_path / "opa.log"
    with server.start() as opa:
        assert wait_until(lambda: "verification" in server.log_path.read_text(errors="replace"))
        assert decide(opa.url, "ws_abc123", "web_search") == {}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--discovery", "--workspace", "ws_abc123"], "--discovery: the workspaces come from the discovery bundle"),
        ([], "give --workspace (one per workspace) or --discovery"),
    ],
)
def test_bootstrap_flags_are_checked(argv, message, tmp_path, capsys):
    _, public = keys(tmp_path)
    assert cli("opa-config", "--service-url", "https://b.example", *argv, "--verification-key", public) == 1
    assert message in capsys.readouterr().err


def test_discovery_needs_a_signing_key(tmp_path, capsys):
    assert cli("publish", "--site", tmp_path / "site", "--discovery", "--file", CODING, "--keyring", KEYRING) == 1
    assert "no --signing-key" in capsys.readouterr().err
    assert not (tmp_path / "site").exists()


def test_republishing_an_unchanged_site_rewrites_nothing(tmp_path):
    """RS256 bundles are deterministic and unchanged files are left alone: hosts keep their mtime-based ETags."""
    private, _ = keys(tmp_path)
    site = tmp_path / "site"
    argv = ("publish", "--site", site, "--discovery", "--file", CODING, "--keyring", KEYRING, "--signing-key", private)
    assert cli(*argv) == 0
    files = sorted(p for p in site.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    for p in files:  # an mtime in the past, so a rewrite could not go unnoticed
        os.utime(p, ns=(before[p] - 10**9, before[p] - 10**9))
    assert cli(*argv) == 0
    assert {p: p.stat().st_mtime_ns for p in files} == {p: before[p] - 10**9 for p in files}
