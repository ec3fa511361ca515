"""Fleet distribution, second pass: discovery from an OCI registry, credentials that stay with their service,
workspace ids that map one-to-one to repositories, and nothing pushed that no OPA config could verify.

Real OPA on loopback pulls from `crane registry serve` and from loopback HTTP hosts; every server is stopped by
its fixture.
"""

from __future__ import annotations

import json

import pytest
import yaml
from sekuire.compiler.distribute.oci import OCIReference
from sekuire.compiler.errors import CompileError

from .backend_server import signed_policy
from .conftest import wait_until
from .test_oci import _answers, _keys, registry  # noqa: F401 - registry is a fixture
from .test_opa_config_services import _config, _decides, _host, site  # noqa: F401 - site is a fixture
from .test_opa_integration import CODING, KEYRING, RESEARCH, cli, query

BUNDLE_TOKEN = "registry-or-bundle-host-token"
LOGS_TOKEN = "log-collector-token"


def test_opa_activates_the_workspaces_through_discovery_from_an_oci_registry(tmp_path, registry, opa_server, capsys):  # noqa: F811
    private, public = _keys(tmp_path, "RS256")
    target = f"{registry}/fleet/policies:prod"
    assert cli("publish", "--oci", target, "--oci-plain-http", "--discovery", "--file", CODING, "--file", RESEARCH,
               "--keyring", KEYRING, "--signing-key", private) == 0
    out = capsys.readouterr().out
    assert f"Pushed the discovery bundle naming 2 workspace(s) to {target}" in out
    boot = tmp_path / "boot.yaml"
    assert cli("opa-config", "--oci", target, "--oci-plain-http", "--discovery", "--verification-key", public,
               "--polling-min", "1", "--polling-max", "2", "--out", boot) == 0
    written = yaml.safe_load(boot.read_text())
    assert "bundles" not in written and written["discovery"]["resource"] == target
    assert written["services"]["sekuire"]["type"] == "oci"
    with opa_server(["--config-file", str(boot)]) as opa:
        # OPA activates the discovered bundles one by one: wait for both before judging either.
        assert wait_until(lambda: _answers(opa.url) is not None and _research(opa.url) is not None, timeout=30)
        assert [v["rule"] for v in _answers(opa.url)["violations"]] == ["tool.blocked"]
        assert _research(opa.url)["allow"] is True


def _research(url: str) -> dict | None:
    try:
        return query(url, "sekuire/workspaces/ws-research-eu/decision", {"type": "tool", "name": "web_search"})
    except KeyError:  # not activated yet: OPA answers without a result
        return None


def test_case_sensitive_workspace_ids_never_share_a_repository():
    target = OCIReference.parse("registry.example/fleet")
    assert target.for_workspace("ws-research-eu") == "registry.example/fleet/ws-research-eu:latest"
    with pytest.raises(CompileError, match="cannot name an OCI repository"):
        target.for_workspace("Team")  # "team" is another workspace; lower-casing would overwrite its bundle


def test_a_workspace_id_no_repository_can_hold_stops_the_publish_before_any_push(
    tmp_path, registry, envelope_vectors, vector_seed, vector_keyring, capsys  # noqa: F811
):
    upper = tmp_path / "upper.json"
    upper.write_text(json.dumps(signed_policy(envelope_vectors["valid"], vector_seed, workspace_id="Team")))
    lower = tmp_path / "lower.json"
    lower.write_text(json.dumps(envelope_vectors["valid"]))
    private, _ = _keys(tmp_path, "RS256")
    assert cli("publish", "--oci", f"{registry}/fleet", "--oci-plain-http", "--file", lower, "--file", upper,
               "--keyring", vector_keyring.path, "--signing-key", private) == 1
    captured = capsys.readouterr()
    assert "workspace id 'Team' cannot name an OCI repository" in captured.err and "Pushed" not in captured.out
    import httpx

    assert httpx.get(f"http://{registry}/v2/_catalog", timeout=5).json().get("repositories") in ([], None)


@pytest.mark.parametrize("where", [["--oci", "127.0.0.1:1/fleet", "--oci-plain-http"], ["--site", "SITE", "--discovery"]])
def test_eddsa_bundles_that_only_an_opa_config_would_pull_are_not_published(where, tmp_path, capsys):
    private, _ = _keys(tmp_path, "EdDSA")
    where = [str(tmp_path / "site") if w == "SITE" else w for w in where]
    assert cli("publish", *where, "--file", CODING, "--keyring", KEYRING, "--signing-key", private,
               "--signing-alg", "EdDSA") == 1
    assert "--signing-alg EdDSA: only an OPA config pulls" in capsys.readouterr().err
    assert not (tmp_path / "site").exists()


def test_log_and_status_services_never_get_the_bundle_services_token(tmp_path, rsa_keys, site, opa_server,  # noqa: F811
                                                                     monkeypatch):
    monkeypatch.setenv("SEKUIRE_TEST_BUNDLE_TOKEN", BUNDLE_TOKEN)
    monkeypatch.setenv("SEKUIRE_TEST_LOGS_TOKEN", LOGS_TOKEN)
    with _host(site, required=("Authorization", f"Bearer {BUNDLE_TOKEN}")) as (url, _), \
            _host(tmp_path) as (logs_url, logs), _host(tmp_path) as (status_url, status):
        config = _config(tmp_path, rsa_keys, url, "--bearer-token-env", "SEKUIRE_TEST_BUNDLE_TOKEN",
                         "--decision-logs-url", logs_url, "--decision-logs-bearer-token-env", "SEKUIRE_TEST_LOGS_TOKEN",
                         "--status-url", status_url)
        services = yaml.safe_load(config.read_text())["services"]
        assert services["sekuire-logs"]["credentials"] == {"bearer": {"token": "${SEKUIRE_TEST_LOGS_TOKEN}"}}
        assert "credentials" not in services["sekuire-status"]
        with opa_server(["--config-file", str(config)]).start(health_query="?bundles") as opa:
            _decides(opa)
            assert wait_until(lambda: any(m == "POST" and p == "/logs" for m, p, _ in logs), timeout=30)
            assert wait_until(lambda: any(m == "POST" and p == "/status" for m, p, _ in status), timeout=30)
    assert {h.get("Authorization") for m, _, h in logs if m == "POST"} == {f"Bearer {LOGS_TOKEN}"}
    assert {h.get("Authorization") for m, _, h in status if m == "POST"} == {None}


@pytest.mark.parametrize("flags, message", [
    (["--service-url", "http://bundles.example", "--bearer-token-env", "T"], "would cross the network in clear"),
    (["--service-url", "https://bundles.example", "--decision-logs-url", "http://logs.example",
      "--decision-logs-bearer-token-file", "t"], "would cross the network in clear to http://logs.example"),
    (["--service-url", "https://bundles.example", "--status-bearer-token-env", "T"], "--status-bearer-token-* needs --status-url"),
])
def test_tokens_in_clear_and_orphan_tokens_are_refused(flags, message, tmp_path, rsa_keys, capsys):  # noqa: F811
    out = tmp_path / "opa.yaml"
    assert cli("opa-config", *flags, "--workspace", "ws_abc123", "--verification-key", rsa_keys[1], "--out", out) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_reporting_services_keep_the_client_certificate_over_https(tmp_path, rsa_keys, capsys):  # noqa: F811
    out = tmp_path / "opa.yaml"
    assert cli("opa-config", "--service-url", "https://bundles.example", "--workspace", "ws_abc123",
               "--verification-key", rsa_keys[1], "--client-cert", "c.pem", "--client-key", "k.pem", "--ca-cert", "ca.pem",
               "--decision-logs-url", "https://logs.example", "--status-url", "http://127.0.0.1:9", "--out", out) == 0
    services = yaml.safe_load(out.read_text())["services"]
    assert services["sekuire-logs"]["credentials"] == services["sekuire"]["credentials"]  # the OPA's identity
    assert services["sekuire-logs"]["tls"] == services["sekuire"]["tls"]
    assert "credentials" not in services["sekuire-status"] and "tls" not in services["sekuire-status"]  # plain http


def test_a_basic_scheme_token_reaches_the_host_as_written(tmp_path, rsa_keys, site, opa_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SEKUIRE_TEST_BASIC", "dXNlcjpwYXNzd29yZA==")  # base64 of user:password, as an HTTP host wants it
    with _host(site, required=("Authorization", "Basic dXNlcjpwYXNzd29yZA==")) as (url, seen):
        config = _config(tmp_path, rsa_keys, url, "--bearer-token-env", "SEKUIRE_TEST_BASIC", "--bearer-scheme", "Basic")
        assert yaml.safe_load(config.read_text())["services"]["sekuire"]["credentials"] == {
            "bearer": {"token": "${SEKUIRE_TEST_BASIC}", "scheme": "Basic"}
        }
        with opa_server(["--config-file", str(config)]).start(health_query="?bundles") as opa:
            _decides(opa)
    assert "dXNlcjpwYXNzd29yZA" not in config.read_text()


@pytest.mark.parametrize("flags, message", [
    (["--bearer-scheme", "Basic"], "--bearer-scheme needs --bearer-token-file or --bearer-token-env"),
    (["--bearer-token-env", "T", "--bearer-scheme", "Basic realm"], "--bearer-scheme must be an HTTP authentication scheme"),
])
def test_bad_schemes_are_refused(flags, message, tmp_path, rsa_keys, capsys):  # noqa: F811
    assert cli("opa-config", "--service-url", "https://b.example", "--workspace", "ws_abc123",
               "--verification-key", rsa_keys[1], *flags) == 1
    assert message in capsys.readouterr().err
