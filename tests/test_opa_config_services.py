"""Every config shape ``sekuire opa-config`` writes starts a real OPA (issue 12.3), against real servers on loopback.

- a bearer token from a file and from an environment variable: the bundle host
  refuses requests without it, OPA activates the bundle;
- mTLS: an HTTPS bundle host that requires a client certificate (a CA, server
  and client certificates made with ``cryptography``);
- S3 signing from environment credentials: OPA signs its request with SigV4;
- separate decision-log and status services: each receives its own uploads;
- persistence: OPA restarted with the bundle host gone starts from the bundle
  it persisted;
- bad combinations are one-line errors naming the flags, and nothing is written.
"""

from __future__ import annotations

import datetime
import functools
import http.server
import ipaddress
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .conftest import static_http_server, wait_until
from .test_opa_integration import CODING, KEYRING, cli, query

TOKEN = "s3cr3t-token-for-tests"
DECISION = "sekuire/workspaces/ws_abc123/decision"


class _Host(http.server.SimpleHTTPRequestHandler):
    """Serves the site to requests carrying ``required`` (a header value, or None), records every request."""

    seen: list[tuple[str, str, dict[str, str]]]
    required: tuple[str, str] | None = None

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append(("GET", self.path, dict(self.headers)))
        if self.required and self.headers.get(self.required[0]) != self.required[1]:
            self.send_error(401)
            return
        super().do_GET()

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.seen.append(("POST", self.path, dict(self.headers)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextmanager
def _host(site: Path, *, required: tuple[str, str] | None = None,
          tls: ssl.SSLContext | None = None) -> Iterator[tuple[str, list[tuple[str, str, dict[str, str]]]]]:
    seen: list[tuple[str, str, dict[str, str]]] = []
    handler = type("Host", (_Host,), {"seen": seen, "required": required})
    with static_http_server(site, functools.partial(handler, directory=str(site)), tls=tls) as url:
        yield url, seen


@pytest.fixture()
def site(tmp_path, rsa_keys) -> Path:
    out = tmp_path / "site"
    assert cli("publish", "--site", out, "--file", CODING, "--keyring", KEYRING, "--signing-key", rsa_keys[0]) == 0
    return out


def _config(tmp_path: Path, rsa_keys, url: str, *extra: Any) -> Path:
    config = tmp_path / "opa.yaml"
    assert cli("opa-config", "--service-url", url, "--workspace", "ws_abc123", "--verification-key", rsa_keys[1],
               "--polling-min", "1", "--polling-max", "2", "--out", config, *extra) == 0
    return config


def _decides(opa) -> None:
    assert query(opa.url, DECISION, {"type": "tool", "name": "file_delete"})["violations"][0]["rule"] == "tool.blocked"


def test_bearer_token_from_a_file(tmp_path, rsa_keys, site, opa_server):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    with _host(site, required=("Authorization", f"Bearer {TOKEN}")) as (url, seen):
        config = _config(tmp_path, rsa_keys, url, "--bearer-token-file", token_file)
        assert TOKEN not in config.read_text(encoding="utf-8")
        with opa_server(["--config-file", str(config)]).start(health_query="?bundles") as opa:
            _decides(opa)
    assert all(headers.get("Authorization") == f"Bearer {TOKEN}" for _, _, headers in seen)


def test_bearer_token_from_an_environment_variable(tmp_path, rsa_keys, site, opa_server, monkeypatch):
    monkeypatch.setenv("SEKUIRE_TEST_BUNDLE_TOKEN", TOKEN)
    with _host(site, required=("Authorization", f"Bearer {TOKEN}")) as (url, _):
        config = _config(tmp_path, rsa_keys, url, "--bearer-token-env", "SEKUIRE_TEST_BUNDLE_TOKEN")
        assert TOKEN not in config.read_text(encoding="utf-8")
        with opa_server(["--config-file", str(config)]).start(health_query="?bundles") as opa:
            _decides(opa)


def _certificate(name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, issuer_key: Any, *,
                 ca: bool = False, ip: str | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pki(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = _certificate("test CA", ca_key, ca_name, ca_key, ca=True)
    files = {"ca": (ca, None)}
    for name, ip in (("server", "127.0.0.1"), ("client", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        files[name] = (_certificate(name, key, ca_name, ca_key, ip=ip), key)
    paths = {}
    for name, (cert, key) in files.items():
        paths[name] = folder / f"{name}.pem"
        paths[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            paths[f"{name}-key"] = folder / f"{name}-key.pem"
            paths[f"{name}-key"].write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


def test_mtls_with_a_client_certificate(tmp_path, rsa_keys, site, opa_server):
    pki = _pki(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pki["server"], pki["server-key"])
    tls.load_verify_locations(pki["ca"])
    tls.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no handshake
    with _host(site, tls=tls) as (url, seen):
        with pytest.raises(httpx.HTTPError):  # the host really refuses a client without a certificate
            httpx.get(f"{url}/bundles/ws_abc123.tar.gz", verify=ssl.create_default_context(cafile=pki["ca"]), timeout=5)
        config = _config(tmp_path, rsa_keys, url, "--client-cert", pki["client"], "--client-key", pki["client-key"],
                         "--ca-cert", pki["ca"])
        with opa_server(["--config-file", str(config)]).start(health_query="?bundles") as opa:
            _decides(opa)
    assert any(path == "/bundles/ws_abc123.tar.gz" for _, path, _ in seen)


def test_s3_signing_from_environment_credentials(tmp_path, rsa_keys, site, opa_server, monkeypatch):
    for name, value in (("AWS_ACCESS_KEY_ID", "AKIDTESTONLY"), ("AWS_SECRET_ACCESS_KEY", "test-secret"),
                        ("AWS_REGION", "eu-west-1")):
        monkeypatch.setenv(name, value)
    with _host(site) as (url, seen):
        config = _config(tmp_path, rsa_keys, url, "--s3-signing")
        with opa_server(["--config-file", str(config)]).start(health_query="?bundles") as opa:
            _decides(opa)
    signed = [headers.get("Authorization", "") for method, _, headers in seen if method == "GET"]
    assert signed and all(value.startswith("AWS4-HMAC-SHA256 Credential=AKIDTESTONLY/") and "/eu-west-1/s3/aws4_request"
                          in value and "Signature=" in value for value in signed)
    assert all("test-secret" not in value for value in signed)


def test_decision_logs_and_status_go_to_their_own_services(tmp_path, rsa_keys, site, opa_server):
    with _host(site) as (url, _), _host(tmp_path) as (logs_url, logs), _host(tmp_path) as (status_url, status):
        config = _config(tmp_path, rsa_keys, url, "--decision-logs-url", logs_url, "--status-url", status_url)
        with opa_server(["--config-file", str(config)]).start(health_query="?bundles") as opa:
            _decides(opa)
            assert wait_until(lambda: any(m == "POST" and p == "/status" for m, p, _ in status), timeout=30)
            assert wait_until(lambda: any(m == "POST" and p == "/logs" for m, p, _ in logs), timeout=30)


def test_persisted_bundles_survive_a_restart_without_the_host(tmp_path, rsa_keys, site, opa_server):
    store = tmp_path / "opa-store"
    with _host(site) as (url, _):
        config = _config(tmp_path, rsa_keys, url, "--persist", "--persistence-dir", store)
        with opa_server(["--config-file", str(config)]).start(health_query="?bundles") as opa:
            _decides(opa)
    assert any(store.rglob("bundle.tar.gz"))
    # the host is gone: OPA starts from the bundle it persisted (still verified with the key)
    with opa_server(["--config-file", str(config)]).start(health_query="?bundles") as opa:
        _decides(opa)


@pytest.mark.parametrize("flags, message", [
    (["--bearer-token-file", "t", "--s3-signing"], "--bearer-token-file and --s3-signing cannot be combined"),
    (["--client-cert", "c.pem"], "--client-cert and --client-key go together"),
    (["--bearer-token-env", "NOT-A-NAME"], "--bearer-token-env must name an environment variable"),
    (["--ca-cert", "ca.pem"], "--ca-cert needs an https:// service URL"),
    (["--persistence-dir", "store"], "--persistence-dir needs --persist"),
    (["--decision-logs", "console", "--decision-logs-url", "http://127.0.0.1:9"], "cannot be combined"),
])
def test_bad_combinations_are_refused_and_nothing_is_written(tmp_path, rsa_keys, capsys, flags, message):
    out = tmp_path / "opa.yaml"
    code = cli("opa-config", "--service-url", "http://127.0.0.1:9", "--workspace", "ws_abc123",
               "--verification-key", rsa_keys[1], "--out", out, *flags)
    err = capsys.readouterr().err
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1 and not out.exists()
