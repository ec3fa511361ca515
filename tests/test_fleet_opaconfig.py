"""Every shape `opa-config` writes starts a real `opa run` that reaches a real loopback server and activates.

Bearer tokens (from a file, from an environment variable) checked by the bundle server; mTLS against a TLS
server that requires a client certificate (certificates made with `cryptography`); S3 SigV4 signing from
OPA's environment; decision logs and status to services of their own; persistence. No secret appears in a
written config. Every server a test starts is stopped by its fixture.
"""

from __future__ import annotations

import datetime
import functools
import gzip
import http.server
import json
import re
import ssl
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sekuire.compiler.cli import main

from .conftest import ROOT, wait_until

EXAMPLES = ROOT / "policies" / "examples"
KEYRING = EXAMPLES / "keyring.json"
CODING = EXAMPLES / "coding-assistant.json"
TOKEN = "s3cr3t-token-never-in-the-config"


def cli(*argv: object) -> int:
    return main([str(a) for a in argv])


@pytest.fixture()
def site(tmp_path) -> tuple[Path, Path]:
    """A published site with the coding workspace, and the public key that verifies it."""
    assert cli("keys", "generate", "--key-id", "default", "--algorithm", "RS256", "--out", tmp_path / "k") == 0
    assert cli("publish", "--site", tmp_path / "site", "--file", CODING, "--keyring", KEYRING,
               "--signing-key", tmp_path / "k.pem") == 0
    return tmp_path / "site", tmp_path / "k.pub.pem"


class Recorder:
    """What a loopback server saw: (method, path, headers, body) per request, thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []

    def add(self, method: str, path: str, headers: Any, body: bytes) -> None:
        with self.lock:
            self.requests.append((method, path, {k.lower(): v for k, v in headers.items()}, body))

    def seen(self, method: str, prefix: str) -> list[tuple[str, str, dict[str, str], bytes]]:
        with self.lock:
            return [r for r in self.requests if r[0] == method and r[1].startswith(prefix)]


def handler(directory: Path, recorder: Recorder, *, token: str | None = None) -> type[http.server.BaseHTTPRequestHandler]:
    """Serves ``directory`` (GET), accepts OPA's decision-log and status POSTs; 401 without ``Bearer token``."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def _authorized(self, body: bytes = b"") -> bool:
            recorder.add(self.command, self.path, self.headers, body)
            if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
                self.send_error(401)
                return False
            return True

        def do_GET(self) -> None:
            if self._authorized():
                super().do_GET()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self._authorized(body):
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

    return functools.partial(Handler, directory=str(directory))  # type: ignore[return-value]


def write_config(tmp_path: Path, public: Path, *flags: object) -> tuple[Path, str]:
    out = tmp_path / "opa.yaml"
    assert cli("opa-config", "--workspace", "ws_abc123", "--verification-key", public, "--polling-min", 1,
               "--polling-max", 2, "--persistence-directory", tmp_path / "opa-store", *flags, "--out", out) == 0
    return out, out.read_text()


def allowed(url: str) -> bool:
    body = {"input": {"action": {"type": "tool", "name": "web_search"}, "context": {"agent": "a"}}}
    return httpx.post(f"{url}/v1/data/sekuire/workspaces/ws_abc123/decision", json=body, timeout=10).json()["result"]["allow"]


def test_bearer_token_from_a_file(site, tmp_path, http_server, opa_server):
    folder, public = site
    recorder = Recorder()
    url = http_server(folder, handler(folder, recorder, token=TOKEN))
    (tmp_path / "token").write_text(TOKEN + "\n")
    config, text = write_config(tmp_path, public, "--service-url", url, "--bearer-token-file", tmp_path / "token")
    assert TOKEN not in text
    assert yaml.safe_load(text)["services"]["sekuire"]["credentials"] == {
        "bearer": {"token_path": str(tmp_path / "token"), "scheme": "Bearer"}
    }
    with opa_server(["--config-file", str(config)]).start(health_query="?bundles") as opa:
        assert allowed(opa.url)
    assert all(r[2]["authorization"] == f"Bearer {TOKEN}" for r in recorder.seen("GET", "/bundles/"))


def test_bearer_token_from_the_environment_and_a_wrong_one(site, tmp_path, http_server, opa_server, monkeypatch):
    folder, public = site
    recorder = Recorder()
    url = http_server(folder, handler(folder, recorder, token=TOKEN))
    config, text = write_config(tmp_path, public, "--service-url", url, "--bearer-token-env", "SEKUIRE_TEST_TOKEN")
    assert TOKEN not in text and "token: ${SEKUIRE_TEST_TOKEN}" in text
    monkeypatch.setenv("SEKUIRE_TEST_TOKEN", "wrong")
    with opa_server(["--config-file", str(config)]).start() as opa:
        assert wait_until(lambda: len(recorder.seen("GET", "/bundles/")) >= 1)
        assert not opa.healthy("?bundles")  # refused with 401: nothing activated
    monkeypatch.setenv("SEKUIRE_TEST_TOKEN", TOKEN)
    with opa_server(["--config-file", str(config)]).start(health_query="?bundles") as opa:
        assert allowed(opa.url)


def _cert(name: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, *, ca: bool = False,
          server: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        import ipaddress

        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def _pem(folder: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return folder / f"{name}.crt", folder / f"{name}.key"


def test_mutual_tls_with_a_client_certificate(site, tmp_path, http_server, opa_server):
    folder, public = site
    ca, ca_key = _cert("sekuire test CA", None, ca=True)
    ca_file, _ = _pem(tmp_path, "ca", ca, ca_key)
    server_cert, server_key = _pem(tmp_path, "server", *_cert("127.0.0.1", (ca.subject, ca_key), server=True))
    client_cert, client_key = _pem(tmp_path, "client", *_cert("opa-fleet-1", (ca.subject, ca_key)))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(server_cert, server_key)
    tls.load_verify_locations(ca_file)
    tls.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no handshake
    url = http_server(folder, tls=tls)
    assert url.startswith("https://")
    with pytest.raises(httpx.HTTPError):  # the server really requires the certificate
        httpx.get(f"{url}/bundles/ws_abc123.tar.gz", verify=ssl.create_default_context(cafile=ca_file), timeout=5)

    config, text = write_config(tmp_path, public, "--service-url", url, "--client-cert", client_cert,
                                "--client-key", client_key, "--ca-cert", ca_file)
    service = yaml.safe_load(text)["services"]["sekuire"]
    assert service["credentials"] == {"client_tls": {"cert": str(client_cert), "private_key": str(client_key)}}
    assert service["tls"] == {"ca_cert": str(ca_file)}
    with opa_server(["--config-file", str(config)]).start(health_query="?bundles") as opa:
        assert allowed(opa.url)


_SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256 Credential=AKIDSEKUIRETEST/(\d{8})/eu-west-1/s3/aws4_request, ?"
    r"SignedHeaders=([a-z0-9;-]+), ?Signature=[0-9a-f]{64}"
)


def test_s3_signing_from_the_environment(site, tmp_path, http_server, opa_server, monkeypatch):
    folder, public = site
    recorder = Recorder()
    url = http_server(folder, handler(folder, recorder))
    for name, value in {"AWS_ACCESS_KEY_ID": "AKIDSEKUIRETEST", "AWS_SECRET_ACCESS_KEY": "not-a-real-secret",
                        "AWS_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    config, text = write_config(tmp_path, public, "--service-url", url, "--s3-signing")
    assert "AKID" not in text and "not-a-real-secret" not in text
    assert yaml.safe_load(text)["services"]["sekuire"]["credentials"] == {"s3_signing": {"environment_credentials": {}}}
    with opa_server(["--config-file", str(config)]).start(health_query="?bundles") as opa:
        assert allowed(opa.url)
    method, path, headers, _ = recorder.seen("GET", "/bundles/ws_abc123.tar.gz")[0]
    match = _SIGV4.fullmatch(headers["authorization"])
    assert match, headers["authorization"]
    assert headers["x-amz-date"].startswith(match.group(1)) and "host" in match.group(2).split(";")
    assert "x-amz-content-sha256" in headers


def test_decision_logs_and_status_go_to_services_of_their_own(site, tmp_path, http_server, opa_server, monkeypatch):
    folder, public = site
    bundles, logs, status = Recorder(), Recorder(), Recorder()
    bundle_url = http_server(folder, handler(folder, bundles))
    logs_url = http_server(tmp_path, handler(tmp_path, logs, token=TOKEN))
    status_url = http_server(tmp_path, handler(tmp_path, status))
    monkeypatch.setenv("SEKUIRE_LOGS_TOKEN", TOKEN)
    config, text = write_config(tmp_path, public, "--service-url", bundle_url, "--persist",
                                "--decision-logs-url", logs_url, "--decision-logs-bearer-token-env", "SEKUIRE_LOGS_TOKEN",
                                "--status-url", status_url)
    assert TOKEN not in text
    written = yaml.safe_load(text)
    assert written["decision_logs"]["service"] == "sekuire-decision-logs"
    assert written["status"] == {"service": "sekuire-status"}
    assert written["bundles"]["sekuire-ws_abc123"]["persist"] is True
    with opa_server(["--config-file", str(config)]).start(health_query="?bundles") as opa:
        assert allowed(opa.url)
        assert wait_until(lambda: logs.seen("POST", "/logs"), timeout=30)
        assert wait_until(lambda: status.seen("POST", "/status"), timeout=30)
    events = [e for r in logs.seen("POST", "/logs") for e in json.loads(r[3])]
    assert any(e["path"] == "sekuire/workspaces/ws_abc123/decision" and "sekuire-ws_abc123" in e["bundles"] for e in events)
    assert all(r[2]["authorization"] == f"Bearer {TOKEN}" for r in logs.seen("POST", "/logs"))
    reports = [json.loads(r[3]) for r in status.seen("POST", "/status")]
    assert any("sekuire-ws_abc123" in report.get("bundles", {}) for report in reports)
    assert "authorization" not in status.seen("POST", "/status")[0][2]  # the logs token went to the logs service only
    assert not logs.seen("GET", "/") and not bundles.seen("POST", "/")
    assert (tmp_path / "opa-store" / "bundles" / "sekuire-ws_abc123" / "bundle.tar.gz").is_file()  # persisted


@pytest.mark.parametrize(
    "flags",
    [
        ["--decision-logs", "console"],
        ["--decision-logs", "service"],
        ["--bearer-token-env", "SEKUIRE_TEST_BASIC", "--bearer-scheme", "Basic"],
        ["--persist", "--polling-min", "30", "--polling-max", "60"],
    ],
    ids=["console-logs", "service-logs", "basic-scheme", "persist-slow-polling"],
)
def test_other_shapes_start_real_opa_and_activate(flags, site, tmp_path, http_server, opa_server, monkeypatch):
    folder, public = site
    recorder = Recorder()
    url = http_server(folder, handler(folder, recorder))
    monkeypatch.setenv("SEKUIRE_TEST_BASIC", "user:password")
    config, text = write_config(tmp_path, public, "--service-url", url, *flags)
    assert "user:password" not in text
    with opa_server(["--config-file", str(config)]).start(health_query="?bundles") as opa:
        assert allowed(opa.url)
    if "Basic" in flags:
        assert recorder.seen("GET", "/bundles/")[0][2]["authorization"] == "Basic user:password"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--bearer-token-file", "t", "--client-cert", "c", "--client-key", "k"], "OPA takes one credential method"),
        (["--bearer-token-file", "t", "--bearer-token-env", "T"], "--bearer-token-file and --bearer-token-env: give one"),
        (["--bearer-token-env", "NOT A NAME"], "--bearer-token-env: 'NOT A NAME' is not an environment variable name"),
        (["--client-cert", "c"], "--client-cert and --client-key go together"),
        (["--bearer-scheme", "Basic"], "--bearer-scheme needs --bearer-token-file or --bearer-token-env"),
        (["--status-bearer-token-env", "T"], "--status-* credentials need --status-url"),
        (["--decision-logs-url", "ftp://x"], "--decision-logs-url: 'ftp://x' is not an http(s) URL"),
        (["--decision-logs", "console", "--decision-logs-url", "https://l.example"], "give one"),
        (["--polling-min", "10", "--polling-max", "5"], "need 0 < min <= max"),
    ],
)
def test_bad_credentials_and_services_are_refused_naming_the_flag(flags, message, tmp_path, site, capsys):
    _, public = site
    out = tmp_path / "never.yaml"
    code = cli("opa-config", "--service-url", "https://bundles.example", "--workspace", "ws_abc123",
               "--verification-key", public, *flags, "--out", out)
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize(
    "url, flags, message",
    [
        ("http://bundles.example", ["--bearer-token-env", "T"], "would cross the network in clear"),
        ("http://bundles.example", ["--client-cert", "c", "--client-key", "k"], "needs an https:// service"),
        ("s3://bucket/prefix", [], "OPA fetches S3 over HTTPS"),
    ],
)
def test_unsafe_or_unreachable_services_are_refused(url, flags, message, tmp_path, site, capsys):
    _, public = site
    assert cli("opa-config", "--service-url", url, "--workspace", "ws_abc123", "--verification-key", public, *flags) == 1
    assert message in capsys.readouterr().err
