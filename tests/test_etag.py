"""ETags on the bundle host (issue 12.6): real OPA polls with If-None-Match, gets 304 and activates nothing new.

A loopback server serves the ``sekuire publish`` tree with a strong ETag per
file (as nginx, caddy and S3 do) and answers a matching ``If-None-Match`` with
304. Real OPA, configured by ``sekuire opa-config`` to poll every second,
downloads and activates each bundle once, then only revalidates; when the
bundle changes, the next poll downloads and activates the new revision. The
same tree served without ETags (``python -m http.server``) is downloaded and
activated again on every poll: the reason the docs point at hosts that send
ETags.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
import time
from pathlib import Path

from .conftest import ROOT, wait_until
from .test_opa_integration import KEYRING, cli, query

CODING = ROOT / "policies" / "examples" / "coding-assistant.json"
RESOURCE = "/bundles/ws_abc123.tar.gz"


class _ETagHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with a strong ETag (the SHA-256 of the content) and 304 for a matching If-None-Match."""

    requests: list[tuple[str, int, str | None]]  # (path, status, If-None-Match sent)
    etags = True

    def do_GET(self) -> None:  # noqa: N802
        path = Path(self.translate_path(self.path))
        if not self.etags or not path.is_file():
            self.requests.append((self.path, 200 if path.is_file() else 404, self.headers.get("If-None-Match")))
            return super().do_GET()
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        sent = self.headers.get("If-None-Match")
        status = 304 if sent == etag else 200
        self.requests.append((self.path, status, sent))
        self.send_response(status)
        self.send_header("ETag", etag)
        if status == 200:
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status == 200:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def _serve(site: Path, *, etags: bool):
    handler = type("Handler", (_ETagHandler,), {"requests": [], "etags": etags})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(site)))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, handler.requests


def _activations(log: Path) -> int:
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.exists() else []
    return sum('"name":"sekuire-ws_abc123"' in line and "activated successfully" in line for line in lines)


def _publish(tmp_path: Path, site: Path, private: Path, version: str | None = None) -> None:
    source = CODING
    if version is not None:  # the same policy re-signed as another version: a new bundle revision
        from sekuire.compiler import sign_document

        from .conftest import ENVELOPE_VECTORS

        document = json.loads(CODING.read_text(encoding="utf-8"))
        document["version"] = version
        seed = bytes.fromhex(json.loads(ENVELOPE_VECTORS.read_text(encoding="utf-8"))["key"]["private_seed_hex"])
        source = tmp_path / f"policy-v{version}.json"
        source.write_text(json.dumps(sign_document(document, seed, document["signing_key_id"])), encoding="utf-8")
    assert cli("publish", "--site", site, "--file", source, "--keyring", KEYRING, "--signing-key", private) == 0


def _run(tmp_path: Path, rsa_keys, opa_server, *, etags: bool) -> tuple[list, Path, Path, object]:
    private, public = rsa_keys
    site = tmp_path / "site"
    _publish(tmp_path, site, private)
    server, requests = _serve(site, etags=etags)
    config = tmp_path / "opa.yaml"
    url = f"http://127.0.0.1:{server.server_address[1]}"
    assert cli("opa-config", "--service-url", url, "--workspace", "ws_abc123", "--verification-key", public,
               "--polling-min", "1", "--polling-max", "1", "--out", config) == 0
    opa = opa_server(["--config-file", str(config), "--log-level", "info", "--log-format", "json"])
    opa.log_path = tmp_path / "opa.log"
    opa.start(health_query="?bundles")
    return requests, site, opa.log_path, (server, opa)


def test_opa_revalidates_with_etags_and_activates_only_changes(tmp_path, rsa_keys, opa_server):
    requests, site, log, (server, opa) = _run(tmp_path, rsa_keys, opa_server, etags=True)
    try:
        assert wait_until(lambda: sum(1 for p, s, _ in requests if p == RESOURCE and s == 304) >= 3, timeout=30)
        polls = [r for r in requests if r[0] == RESOURCE]
        # one download, then every poll sends the ETag back and gets 304: nothing re-downloaded or re-activated
        assert [s for _, s, _ in polls[:1]] == [200] and all(s == 304 and sent for _, s, sent in polls[1:])
        assert _activations(log) == 1
        before = query(opa.url, "sekuire/workspaces/ws_abc123/decision", {"type": "tool", "name": "web_search"})
        # a new version is published: the next poll downloads it (200) and OPA activates the new revision
        _publish(tmp_path, site, rsa_keys[0], version="2")
        assert wait_until(lambda: query(opa.url, "sekuire/workspaces/ws_abc123/decision",
                                        {"type": "tool", "name": "web_search"})["policy"]["version"] == "2", timeout=30)
        assert before["policy"]["version"] == "1"
        assert wait_until(lambda: _activations(log) == 2, timeout=10)
        assert [s for p, s, _ in requests if p == RESOURCE].count(200) == 2
    finally:
        opa.stop()
        server.shutdown()
        server.server_close()


def test_without_etags_opa_downloads_and_activates_on_every_poll(tmp_path, rsa_keys, opa_server):
    requests, _, log, (server, opa) = _run(tmp_path, rsa_keys, opa_server, etags=False)
    try:
        assert wait_until(lambda: sum(1 for p, _, _ in requests if p == RESOURCE) >= 4, timeout=30)
        assert all(s == 200 for p, s, _ in requests if p == RESOURCE)
        assert wait_until(lambda: _activations(log) >= 3, timeout=10)
    finally:
        opa.stop()
        server.shutdown()
        server.server_close()


def test_publishing_the_same_policy_again_leaves_every_file_untouched(tmp_path, rsa_keys):
    """Deterministic bundles (RS256) and an unchanged tree: mtimes stay, so size+mtime ETags (nginx, caddy) stay."""
    site = tmp_path / "site"
    _publish(tmp_path, site, rsa_keys[0])
    before = {path: path.stat().st_mtime_ns for path in site.rglob("*") if path.is_file()}
    time.sleep(0.05)
    _publish(tmp_path, site, rsa_keys[0])
    assert {path: path.stat().st_mtime_ns for path in site.rglob("*") if path.is_file()} == before
    _publish(tmp_path, site, rsa_keys[0], version="2")
    changed = {path for path in before if path.stat().st_mtime_ns != before[path]}
    assert {path.relative_to(site).as_posix() for path in changed} == {
        "bundles/ws_abc123.tar.gz", "v1/workspaces/ws_abc123/policies/active"}
