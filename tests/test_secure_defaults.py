"""Secure by default: publish and opa-config refuse unsigned output without an explicit flag; ids and algorithms are checked.

Each refusal is one line on stderr, exit 1 and nothing on disk; with
``--allow-unsigned-bundles`` the output is written and a warning says so. The
config written on purpose without a signing block is accepted by a real OPA,
which is exactly why it needs the flag.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sekuire.compiler.cli import main

from .conftest import ROOT

EXAMPLES = ROOT / "policies" / "examples"
CODING, KEYRING = EXAMPLES / "coding-assistant.json", EXAMPLES / "keyring.json"


def _run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_publish_without_a_signing_key_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site"
    code, out, err = _run(capsys, "publish", "--site", site, "--file", CODING, "--keyring", KEYRING)
    assert code == 1 and out == "" and err.count("\n") == 1 and "--allow-unsigned-bundles" in err
    assert not site.exists()


def test_publish_unsigned_on_purpose_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site"
    code, _, err = _run(capsys, "publish", "--site", site, "--file", CODING, "--keyring", KEYRING,
                        "--allow-unsigned-bundles")
    assert code == 0 and "NOT signed" in err
    assert (site / "bundles" / "ws_abc123.tar.gz").is_file()


def test_opa_config_without_a_verification_key_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "opa.yaml"
    code, out, err = _run(capsys, "opa-config", "--service-url", "http://127.0.0.1:9", "--workspace", "ws_abc123",
                          "--out", out_file)
    assert code == 1 and out == "" and "--allow-unsigned-bundles" in err and err.count("\n") == 1
    assert not out_file.exists()


@pytest.mark.parametrize("workspace", ["../../etc/passwd", "a/b", ".hidden", "", "x" * 200, "ws\n"])
def test_opa_config_refuses_workspace_ids_that_are_not_names(workspace: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "opa-config", "--service-url", "http://127.0.0.1:9", "--workspace", workspace,
                          "--allow-unsigned-bundles")
    assert code == 1 and out == "" and "workspace id" in err and err.count("\n") == 1


@pytest.mark.parametrize("alg", ["foo", "none", "HS1", "rs256"])
def test_opa_config_refuses_algorithms_opa_does_not_verify(alg: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "k.pem"
    key.write_text("not checked before the algorithm")
    code, _, err = _run(capsys, "opa-config", "--service-url", "http://127.0.0.1:9", "--workspace", "ws_abc123",
                        "--verification-key", key, "--signing-alg", alg)
    assert code == 1 and "unsupported signing algorithm" in err


def test_the_unsigned_config_on_purpose_starts_a_real_opa(tmp_path: Path, opa_server,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "opa.yaml"
    code, _, err = _run(capsys, "opa-config", "--service-url", "http://127.0.0.1:9", "--workspace", "ws_abc123",
                        "--allow-unsigned-bundles", "--out", config)
    assert code == 0 and "NOT signed" in err
    document = yaml.safe_load(config.read_text())
    assert "keys" not in document and "signing" not in document["bundles"]["sekuire-ws_abc123"]
    with opa_server(["--config-file", str(config)]).start() as opa:  # OPA takes it (/health answers)
        assert opa.healthy()
