"""OPA's If-None-Match/304 path against a loopback bundle server that sends ETags (docs/opa.md, "Bundle hosts").

OPA polls every 1-2 s; the server answers 304 to a matching If-None-Match. The status service (`--status-url`)
receives OPA's own bundle status: with ETags the activation time stays the one of the first download while
polls go on; without them (the contrast, what `python -m http.server` does) every poll activates again.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from .conftest import wait_until
from .test_fleet_opaconfig import Recorder, cli, handler

BUNDLE = "sekuire-ws_abc123"
CODING = Path(__file__).resolve().parent.parent / "policies" / "examples" / "coding-assistant.json"
KEYRING = CODING.with_name("keyring.json")


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.codes: list[int] = []

    def add(self, code: int) -> None:
        with self.lock:
            self.codes.append(code)

    def count(self, code: int) -> int:
        with self.lock:
            return self.codes.count(code)


def bundle_host(directory: Path, counts: Counts, *, etag: bool) -> type[http.server.BaseHTTPRequestHandler]:
    """A static host; with ``etag`` it sends a strong ETag (the SHA-256 of the file) and answers 304 to a match."""

    class Host(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:
            path = Path(self.translate_path(self.path))
            if not path.is_file():
                counts.add(404)
                self.send_error(404)
                return
            body = path.read_bytes()
            tag = f'"{hashlib.sha256(body).hexdigest()}"'
            if etag and self.headers.get("If-None-Match") == tag:
                counts.add(304)
                self.send_response(304)
                self.send_header("ETag", tag)
                self.end_headers()
                return
            counts.add(200)
            self.send_response(200)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(len(body)))
            if etag:
                self.send_header("ETag", tag)
            self.end_headers()
            self.wfile.write(body)

    return functools.partial(Host, directory=str(directory))  # type: ignore[return-value]


def instant(stamp: str) -> tuple[str, str]:
    """An RFC 3339 UTC time as OPA writes it (Go trims trailing zeros of the fraction), comparable as a tuple."""
    head, _, fraction = stamp.rstrip("Z").partition(".")
    return head, fraction.ljust(9, "0")


def bundle_status(status: Recorder) -> list[dict]:
    reports = [json.loads(r[3]) for r in status.seen("POST", "/status")]
    return [report["bundles"][BUNDLE] for report in reports if BUNDLE in report.get("bundles", {})]


@pytest.mark.parametrize("etag", [True, False], ids=["etag", "no-etag"])
def test_an_unchanged_bundle_is_not_activated_again_when_the_host_sends_etags(etag, tmp_path, http_server, opa_server):
    assert cli("keys", "generate", "--key-id", "default", "--algorithm", "RS256", "--out", tmp_path / "k") == 0
    assert cli("publish", "--site", tmp_path / "site", "--file", CODING, "--keyring", KEYRING,
               "--signing-key", tmp_path / "k.pem") == 0
    counts, status = Counts(), Recorder()
    url = http_server(tmp_path / "site", bundle_host(tmp_path / "site", counts, etag=etag))
    status_url = http_server(tmp_path, handler(tmp_path, status))
    config = tmp_path / "opa.yaml"
    assert cli("opa-config", "--service-url", url, "--workspace", "ws_abc123", "--verification-key", tmp_path / "k.pub.pem",
               "--polling-min", 1, "--polling-max", 1, "--status-url", status_url, "--out", config) == 0

    with opa_server(["--config-file", str(config)]).start(health_query="?bundles"):
        if etag:
            # three polls answered 304, and OPA reported the status of a poll after the first activation
            assert wait_until(lambda: counts.count(304) >= 3, timeout=30)
            assert wait_until(lambda: any(instant(s["last_successful_request"]) > instant(s["last_successful_activation"])
                                          for s in bundle_status(status)), timeout=30)
        else:
            assert wait_until(lambda: counts.count(200) >= 3, timeout=30)
            assert wait_until(lambda: len({s["last_successful_activation"] for s in bundle_status(status)}) >= 2,
                              timeout=30)
    activations = {s["last_successful_activation"] for s in bundle_status(status)}
    if etag:
        assert counts.count(200) == 1 and counts.count(304) >= 3
        assert len(activations) == 1  # one activation, however many polls
    else:
        assert counts.count(304) == 0 and len(activations) >= 2  # every poll re-downloads and re-activates
