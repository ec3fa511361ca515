"""Discovery (issue 12.2): real OPA started with only the bootstrap config activates every workspace of the site.

``sekuire publish --discovery`` writes a signed discovery bundle naming each
workspace bundle of the site; ``sekuire opa-config --discovery`` writes the
bootstrap (service, key, discovery). OPA verifies the discovery bundle, then
each workspace bundle, and answers; a workspace published later reaches it on
the next discovery poll; a discovery bundle signed by another key is refused.
"""

from __future__ import annotations

import tarfile
import io

import yaml

from sekuire.compiler.bundle.tarball import load_bundle
from sekuire.compiler.cli import main

from .conftest import static_http_server, wait_until
from .test_opa_integration import CODING, KEYRING, RESEARCH, cli, query

CODING_DECISION = "sekuire/workspaces/ws_abc123/decision"
RESEARCH_DECISION = "sekuire/workspaces/ws-research-eu/decision"


def _publish(site, private, *files):
    assert cli("publish", "--site", site, *[a for f in files for a in ("--file", f)], "--keyring", KEYRING,
               "--signing-key", private, "--discovery", "--polling-min", "1", "--polling-max", "2") == 0


def _answers(url: str, path: str) -> bool:
    try:
        return "allow" in query(url, path, {"type": "tool", "name": "web_search"})
    except Exception:  # noqa: BLE001 - not activated yet
        return False


def test_opa_activates_the_workspaces_through_discovery(tmp_path, rsa_keys, opa_server):
    private, public = rsa_keys
    site = tmp_path / "site"
    _publish(site, private, CODING)
    discovery = load_bundle(site / "discovery" / "sekuire.tar.gz")
    assert discovery.signed and discovery.roots == ["sekuire/discovery"]
    with static_http_server(site) as url:
        config = tmp_path / "bootstrap.yaml"
        assert cli("opa-config", "--discovery", "--service-url", url, "--verification-key", public,
                   "--polling-min", "1", "--polling-max", "2", "--out", config) == 0
        bootstrap = yaml.safe_load(config.read_text(encoding="utf-8"))
        assert "bundles" not in bootstrap and bootstrap["discovery"]["signing"] == {"keyid": "default"}
        with opa_server(["--config-file", str(config)]).start(health_query="?bundles") as opa:
            assert wait_until(lambda: _answers(opa.url, CODING_DECISION), timeout=30)
            blocked = query(opa.url, CODING_DECISION, {"type": "tool", "name": "file_delete"})
            assert [v["rule"] for v in blocked["violations"]] == ["tool.blocked"]
            assert not _answers(opa.url, RESEARCH_DECISION)
            # a second workspace published: the next discovery poll brings it to every OPA of the fleet
            _publish(site, private, RESEARCH)
            assert wait_until(lambda: _answers(opa.url, RESEARCH_DECISION), timeout=30)
            assert _answers(opa.url, CODING_DECISION)


def test_a_discovery_bundle_signed_by_another_key_is_refused(tmp_path, rsa_keys, opa_server):
    private, public = rsa_keys
    other = tmp_path / "other"
    assert main(["keys", "generate", "--key-id", "default", "--algorithm", "RS256", "--out", str(other)]) == 0
    site = tmp_path / "site"
    _publish(site, str(other) + ".pem", CODING)  # the fleet's OPAs trust `public`, not this key
    with static_http_server(site) as url:
        config = tmp_path / "bootstrap.yaml"
        assert cli("opa-config", "--discovery", "--service-url", url, "--verification-key", public,
                   "--polling-min", "1", "--polling-max", "2", "--out", config) == 0
        opa = opa_server(["--config-file", str(config)]).start(wait_healthy=False)
        assert wait_until(lambda: opa.healthy(), timeout=20)
        assert not wait_until(lambda: _answers(opa.url, CODING_DECISION), timeout=4)
        assert not opa.healthy("?bundles") or not _answers(opa.url, CODING_DECISION)
        opa.stop()
    # the discovery bundle holds configuration only: no module, data under its own root
    with tarfile.open(fileobj=io.BytesIO((site / "discovery" / "sekuire.tar.gz").read_bytes())) as tar:
        assert sorted(tar.getnames()) == ["/.manifest", "/.signatures.json", "/data.json"]
