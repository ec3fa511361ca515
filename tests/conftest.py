"""Shared fixtures: the real OPA binary, OPA servers and static HTTP servers on loopback, the vector keys.

Every server a fixture starts is stopped by the fixture. In CI (``CI=true``) a
missing OPA binary fails the test instead of skipping it.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import ssl
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sekuire.compiler import Keyring

pytest_plugins = ["tests.enforcer_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
#: The shared test vectors, copied into the repository byte for byte (tests/vectors/README.md).
VECTORS = ROOT / "tests" / "vectors"
ENVELOPE_VECTORS = VECTORS / "policy-envelope.json"
VECTOR_POLICY = VECTORS / "policy.json"


def find_opa() -> str | None:
    candidates = [os.environ.get("SEKUIRE_OPA"), str(ROOT / ".tools" / "bin" / "opa"), shutil.which("opa")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _needs_opa(item: pytest.Item) -> bool:
    """Whether a test runs the real OPA: it uses ``opa_bin`` (directly or through a fixture) or the "opa" engine."""
    callspec = getattr(item, "callspec", None)
    return "opa_bin" in getattr(item, "fixturenames", ()) or (
        callspec is not None and callspec.params.get("engine_kind") == "opa"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ``opa`` marker goes on exactly the tests that need the real OPA (``-m "not opa"`` runs the others)."""
    for item in items:
        if item.get_closest_marker("opa") is not None and not _needs_opa(item):
            raise pytest.UsageError(f"{item.nodeid}: marked opa but uses no OPA fixture; the marker is automatic")
        if _needs_opa(item):
            item.add_marker(pytest.mark.opa)


def tool_or_skip(path: str | None, make_target: str) -> str:
    """A tool the tests run (the real OPA, crane); missing: a failure in CI, a skip elsewhere."""
    if path is None:
        message = f"{make_target} is missing: run `make {make_target}`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def opa_bin() -> str:
    return tool_or_skip(find_opa(), "opa")


@pytest.fixture(scope="session")
def envelope_vectors() -> dict:
    return json.loads(ENVELOPE_VECTORS.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def vector_seed(envelope_vectors) -> bytes:
    return bytes.fromhex(envelope_vectors["key"]["private_seed_hex"])


@pytest.fixture()
def vector_keyring(envelope_vectors, tmp_path) -> Keyring:
    """The test keyring with key_test_1, saved to a file (``.path``)."""
    key = envelope_vectors["key"]
    keyring = Keyring(keys={key["key_id"]: bytes.fromhex(key["public_key_hex"])}, path=tmp_path / "keyring.json")
    keyring.save()
    return keyring


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


class OPAServer:
    """``opa run --server`` on 127.0.0.1 with a port of its own."""

    def __init__(self, opa: str, args: list[str], *, cwd: Path | None = None, port: int | None = None) -> None:
        self.opa = opa
        self.args = args
        self.cwd = cwd
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    def start(self, *, wait_healthy: bool = True, health_query: str = "") -> OPAServer:
        cmd = [self.opa, "run", "--server", "--addr", f"127.0.0.1:{self.port}", "--log-level", "error", *self.args]
        self._log = open(os.devnull, "wb") if self.log_path is None else open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT)
        if wait_healthy and not wait_until(lambda: self.healthy(health_query)):
            self.stop()
            raise RuntimeError(f"OPA did not become healthy: {' '.join(cmd)}")
        return self

    def healthy(self, query: str = "") -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"OPA exited with {self.proc.returncode}")
        try:
            return httpx.get(f"{self.url}/health{query}", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> OPAServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture()
def opa_server(opa_bin):
    """Factory: ``with opa_server([...args]) as srv`` starts OPA on loopback and stops it afterwards."""
    started: list[OPAServer] = []

    def factory(args: list[str], **kwargs) -> OPAServer:
        server = OPAServer(opa_bin, args, **kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def static_http_server(directory: Path, handler: Any = None, *, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a real HTTP server; HTTPS with ``tls``); yields the base URL, stops it after.

    ``handler``: a handler class (or a partial of one) instead of the quiet static-file handler.
    """
    handler_cls = handler or functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    # A short poll interval: shutdown() waits up to one interval, at every test teardown.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture()
def http_server():
    """Factory fixture around :func:`static_http_server`; every server is stopped at teardown."""
    with contextlib.ExitStack() as stack:
        yield lambda directory, handler=None: stack.enter_context(static_http_server(directory, handler))


@pytest.fixture()
def backend(envelope_vectors):
    """A policy backend (tests/backend_server.py) serving the vectors' policy and key_test_1; tests may change both."""
    from .backend_server import PolicyBackend

    backend = PolicyBackend()
    backend.set_policy(envelope_vectors["valid"])
    backend.set_key("key_test_1", envelope_vectors["key"]["public_key_hex"])
    return backend


@pytest.fixture()
def documents(envelope_vectors, vector_seed) -> dict[str, bytes]:
    """The vector policy as v1 and, with one more allowed tool ("shell"), as v2 (both signed by key_test_1)."""
    from .backend_server import signed_policy

    def more(content: dict[str, Any]) -> None:
        content["agent"]["capabilities"]["allowed_tools"].append("shell")

    v1 = envelope_vectors["valid"]
    v2 = signed_policy(v1, vector_seed, version="2", edit_content=more)
    return {"v1": json.dumps(v1).encode(), "v2": json.dumps(v2).encode()}


@pytest.fixture()
def url(backend, http_server, tmp_path) -> str:
    """The base URL of ``backend`` on a real HTTP server on 127.0.0.1 (stopped after the test)."""
    return http_server(tmp_path, backend.handler())


@pytest.fixture(scope="session")
def rsa_keys(tmp_path_factory) -> tuple[Path, Path]:
    """An RS256 bundle-signing key pair (private, public PEM files), as ``sekuire keys generate`` writes it."""
    from sekuire.compiler.cli import main

    folder = tmp_path_factory.mktemp("keys")
    assert main(["keys", "generate", "--key-id", "default", "--algorithm", "RS256", "--out", str(folder / "bundle")]) == 0
    return folder / "bundle.pem", folder / "bundle.pub.pem"
