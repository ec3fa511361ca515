"""OCI distribution end to end: `publish --oci` pushes to a real registry, real OPA pulls with `opa-config --oci`.

The registry is go-containerregistry's `crane registry serve` on a free loopback
port (plain HTTP, hence the explicit --plain-http); OPA is `opa run --server`
with the config `opa-config` wrote. Every server is stopped by its fixture.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from sekuire.compiler import load_policy
from sekuire.compiler.bundle.tarball import load_bundle, write_bundle
from sekuire.compiler.cli import main
from sekuire.compiler.distribute.oci import BUNDLE_LAYER_MEDIA_TYPE, CONFIG_MEDIA_TYPE, parse_oci_reference, push_bundle
from sekuire.compiler.errors import DistributionError

from .conftest import ROOT, wait_until

EXAMPLES = ROOT / "policies" / "examples"
KEYRING = EXAMPLES / "keyring.json"
CODING = EXAMPLES / "coding-assistant.json"
RESEARCH = EXAMPLES / "research-agent.json"
CODING_PATH = "sekuire/workspaces/ws_abc123/decision"
RESEARCH_PATH = "sekuire/workspaces/ws-research-eu/decision"


def cli(*argv: object) -> int:
    return main([str(a) for a in argv])


def keys(folder: Path, alg: str) -> tuple[Path, Path]:
    assert cli("keys", "generate", "--key-id", "default", "--algorithm", alg, "--out", folder / f"k-{alg}") == 0
    return folder / f"k-{alg}.pem", folder / f"k-{alg}.pub.pem"


def decide(url: str, path: str, tool: str) -> dict:
    body = {"input": {"action": {"type": "tool", "name": tool}, "context": {"agent": "a"}}}
    response = httpx.post(f"{url}/v1/data/{path}", json=body, timeout=10)
    response.raise_for_status()
    return response.json().get("result", {})


def oci_config(tmp_path: Path, reference: str, public: Path, alg: str, *workspaces: str) -> Path:
    out = tmp_path / "opa.yaml"
    ws_flags = [f for ws in workspaces for f in ("--workspace", ws)] or ["--discovery"]
    assert cli(
        "opa-config", "--oci", reference, "--plain-http", *ws_flags, "--verification-key", public, "--signing-alg", alg,
        "--polling-min", 1, "--polling-max", 2, "--persistence-directory", tmp_path / "opa-store", "--out", out,
    ) == 0
    return out


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_opa_pulls_verifies_and_answers_from_an_oci_registry(alg, tmp_path, oci_registry, opa_server, capsys):
    private, public = keys(tmp_path, alg)
    reference = f"{oci_registry}/sekuire/policies:v1"
    assert cli("publish", "--oci", reference, "--plain-http", "--file", CODING, "--file", RESEARCH, "--keyring", KEYRING,
               "--signing-key", private, "--signing-alg", alg) == 0
    out = capsys.readouterr().out
    assert f"Pushed {oci_registry}/sekuire/policies/ws_abc123:v1 (sha256:" in out
    assert f"Pushed {oci_registry}/sekuire/policies/ws-research-eu:v1 (sha256:" in out

    config_file = oci_config(tmp_path, reference, public, alg, "ws_abc123", "ws-research-eu")
    config = yaml.safe_load(config_file.read_text())
    assert config["services"]["sekuire"] == {"url": f"http://{oci_registry}", "type": "oci"}
    assert config["bundles"]["sekuire-ws_abc123"]["resource"] == f"{oci_registry}/sekuire/policies/ws_abc123:v1"
    assert config["bundles"]["sekuire-ws_abc123"]["signing"] == {"keyid": "default"}
    assert config["keys"]["default"]["algorithm"] == alg

    # start() waits for /health?bundles: both bundles pulled, verified with the key and activated
    with opa_server(["--config-file", str(config_file)]).start(health_query="?bundles") as opa:
        assert decide(opa.url, CODING_PATH, "web_search")["allow"] is True
        denied = decide(opa.url, CODING_PATH, "file_delete")
        assert denied["allow"] is False and [v["rule"] for v in denied["violations"]] == ["tool.blocked"]
        research = decide(opa.url, RESEARCH_PATH, "web_search")
        assert research["policy"]["policy_id"] == load_policy(RESEARCH, KEYRING).policy_id
        provenance = httpx.post(f"{opa.url}/v1/data/{CODING_PATH}?provenance=true", json={"input": {}}, timeout=10).json()
        assert provenance["provenance"]["bundles"]["sekuire-ws_abc123"]["revision"] == load_policy(CODING, KEYRING).revision


def test_the_pushed_artifact_is_the_shape_opa_documents(tmp_path, oci_registry, crane_bin):
    private, _ = keys(tmp_path, "RS256")
    assert cli("publish", "--oci", f"{oci_registry}/fleet", "--plain-http", "--file", CODING, "--keyring", KEYRING,
               "--signing-key", private) == 0
    manifest = json.loads(subprocess.run([crane_bin, "manifest", "--insecure", f"{oci_registry}/fleet/ws_abc123:latest"],
                                         capture_output=True, check=True).stdout)
    assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    assert [layer["mediaType"] for layer in manifest["layers"]] == [BUNDLE_LAYER_MEDIA_TYPE]
    assert manifest["annotations"]["org.opencontainers.image.revision"] == load_policy(CODING, KEYRING).revision
    blob = subprocess.run([crane_bin, "blob", "--insecure", f"{oci_registry}/fleet/ws_abc123@{manifest['layers'][0]['digest']}"],
                          capture_output=True, check=True).stdout
    (tmp_path / "pulled.tar.gz").write_bytes(blob)
    assert cli("bundle", "verify", tmp_path / "pulled.tar.gz", "--verification-key", tmp_path / "k-RS256.pub.pem") == 0


def _tampered(bundle: bytes, tmp_path: Path) -> bytes:
    (tmp_path / "b.tar.gz").write_bytes(bundle)
    files = dict(load_bundle(tmp_path / "b.tar.gz").files)
    files["data.json"] = files["data.json"].replace(b"file_delete", b"file_delite")  # the signature is kept
    return write_bundle(files)


def _unsigned(bundle: bytes, tmp_path: Path) -> bytes:
    (tmp_path / "b.tar.gz").write_bytes(bundle)
    files = {k: v for k, v in load_bundle(tmp_path / "b.tar.gz").files.items() if k != ".signatures.json"}
    return write_bundle(files)


@pytest.mark.parametrize("alter, reason", [(_tampered, "digest mismatch"), (_unsigned, "missing .signatures.json")])
def test_opa_refuses_a_tampered_or_unsigned_artifact(alter, reason, tmp_path, oci_registry, opa_server):
    private, public = keys(tmp_path, "PS256")
    bundle = tmp_path / "good.tar.gz"
    assert cli("policy", "build", "--file", CODING, "--keyring", KEYRING, "--out", bundle, "--signing-key", private,
               "--signing-alg", "PS256") == 0
    reference = parse_oci_reference(f"{oci_registry}/evil")
    push_bundle(reference.workspace("ws_abc123"), alter(bundle.read_bytes(), tmp_path), revision="x", name="b.tar.gz",
                plain_http=True)
    config_file = oci_config(tmp_path, str(reference), public, "PS256", "ws_abc123")
    server = opa_server(["--config-file", str(config_file)])
    server.log_path = tmp_path / "opa.log"
    with server.start() as opa:
        assert wait_until(lambda: reason in server.log_path.read_text(errors="replace"))
        assert not opa.healthy("?bundles")
        assert decide(opa.url, CODING_PATH, "web_search") == {}  # nothing activated: undefined, no allow


@pytest.mark.parametrize(
    "text, message",
    [
        ("sekuire", "names no registry"),
        ("https://ghcr.io/acme/p", "has a scheme"),
        ("ghcr.io/acme/p@sha256:00", "pins a digest"),
        ("ghcr.io/Acme/p", "invalid repository"),
        ("ghcr.io/acme/p:bad tag", "invalid tag"),
        ("bad_host!/acme", "invalid registry"),
    ],
)
def test_bad_oci_references_are_refused_with_the_flag_named(text, message, tmp_path, capsys):
    assert cli("publish", "--oci", text, "--file", CODING, "--keyring", KEYRING, "--allow-unsigned-bundles") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --oci: ") and message in err and err.count("\n") == 1


def test_references_parse_to_registry_repository_and_tag():
    ref = parse_oci_reference("127.0.0.1:5000/a/b")
    assert (ref.registry, ref.repository, ref.tag) == ("127.0.0.1:5000", "a/b", "latest")
    assert ref.workspace("ws-research-eu") == "127.0.0.1:5000/a/b/ws-research-eu:latest"
    assert str(parse_oci_reference("ghcr.io/acme/policies:prod-1")) == "ghcr.io/acme/policies:prod-1"
    with pytest.raises(DistributionError, match="cannot name an OCI repository"):
        ref.workspace("WS_Upper")


def test_a_registry_that_speaks_http_needs_plain_http(tmp_path, oci_registry, capsys):
    private, _ = keys(tmp_path, "RS256")
    assert cli("publish", "--oci", f"{oci_registry}/x", "--file", CODING, "--keyring", KEYRING, "--signing-key", private) == 1
    err = capsys.readouterr().err
    assert f"{oci_registry}/x/ws_abc123:latest: push failed" in err and "--plain-http" in err


def test_eddsa_is_refused_where_only_an_opa_config_could_verify_it(tmp_path, opa_bin, capsys):
    """OPA 1.22 verifies EdDSA for `opa run --bundle` files only; its config refuses the key, so we refuse too."""
    private, public = keys(tmp_path, "EdDSA")
    assert cli("opa-config", "--oci", "127.0.0.1:1/p", "--workspace", "ws_abc123", "--verification-key", public,
               "--signing-alg", "EdDSA") == 1
    assert "--signing-alg EdDSA: OPA 1.22 verifies EdDSA only for `opa run --bundle` files" in capsys.readouterr().err
    assert cli("publish", "--oci", "127.0.0.1:1/p", "--plain-http", "--file", CODING, "--keyring", KEYRING,
               "--signing-key", private, "--signing-alg", "EdDSA") == 1
    assert "--signing-alg EdDSA" in capsys.readouterr().err
    # the refusal tracks OPA: the same config with the key spelled out does not start
    config = {"services": {"s": {"url": "http://127.0.0.1:1"}}, "bundles": {"b": {"service": "s", "signing": {"keyid": "k"}}},
              "keys": {"k": {"algorithm": "EdDSA", "key": public.read_text()}}}
    (tmp_path / "eddsa.json").write_text(json.dumps(config))
    result = subprocess.run([opa_bin, "run", "--server", "--addr", "127.0.0.1:0", "--config-file", tmp_path / "eddsa.json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "unsupported algorithm 'EdDSA'" in result.stdout + result.stderr
