"""The real OPA as anchor: its REST API on loopback, ``opa bench``, ``opa build``, bundle activation, RSS.

Every server is the tests' :class:`~tests.conftest.OPAServer` (``opa run
--server`` on 127.0.0.1 with a port of its own); callers stop it in a
``finally`` or an ``ExitStack``.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sekuire.runtime.engine import rule_ref

from ..conftest import OPAServer

__all__ = ["RestClient", "activate", "opa_bench", "opa_version", "peak_rss_kib", "run_timed"]

_HEADERS = {"Content-Type": "application/json"}


class RestClient:
    """The cheapest correct Python client of OPA's data API: stdlib http.client, one keep-alive connection.

    JSON encoding of the input and decoding of the answer are part of each call,
    as they are for any client; ``?provenance`` is not asked for.
    """

    def __init__(self, port: int, path: str) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self._url = f"/v1/data/{path.strip('/')}"

    def decide(self, input: Mapping[str, Any]) -> dict[str, Any]:  # OPA's name for it
        self._connection.request("POST", self._url, body=json.dumps({"input": input}), headers=_HEADERS)
        response = self._connection.getresponse()
        body = json.loads(response.read())
        if response.status != 200 or not isinstance(body.get("result"), dict):
            raise RuntimeError(f"OPA answered {response.status}: {str(body)[:200]}")
        return body["result"]

    def close(self) -> None:
        self._connection.close()


def opa_version(opa: str) -> str:
    output = subprocess.run([opa, "version"], capture_output=True, text=True, check=True).stdout
    return output.splitlines()[0].removeprefix("Version:").strip()


def opa_bench(opa: str, bundle: Path, input_file: Path, path: str) -> dict[str, float]:
    """``opa bench`` of the decision in-process: mean ns/op (``T/N``) and OPA's own p99 of query evaluation."""
    command = [opa, "bench", "--format", "json", "--bundle", str(bundle), "--input", str(input_file), rule_ref(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"opa bench failed: {result.stderr.strip()[:300]}")
    report = json.loads(result.stdout)
    extra = report.get("Extra", {})
    return {
        "ns_per_op": report["T"] / report["N"],
        "n": report["N"],
        "eval_median_ns": extra.get("histogram_timer_rego_query_eval_ns_median", 0.0),
        "eval_p99_ns": extra.get("histogram_timer_rego_query_eval_ns_99%", 0.0),
        "allocs_per_op": report.get("MemAllocs", 0) / report["N"],
    }


def run_timed(command: Sequence[str], *, env: Mapping[str, str] | None = None) -> float:
    """Wall seconds of one command run to completion; a failure raises with its stderr."""
    start = time.perf_counter()
    result = subprocess.run(
        list(command), capture_output=True, text=True, env=dict(env) if env is not None else None, timeout=300
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed ({result.returncode}): {result.stderr.strip()[:300]}")
    return elapsed


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident set) of a live process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")


def _healthy(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/health?bundles")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def activate(opa: str, bundle: Path, verification_key: Path, *, timeout: float = 60.0) -> tuple[OPAServer, float]:
    """Start ``opa run --server`` on a signed bundle; seconds from spawn until ``/health?bundles`` says 200.

    ``opa run`` reads, verifies, compiles and activates a ``--bundle`` file before
    it listens, so this is the time until OPA can answer from the bundle (process
    start included; the 10-entry bundle's time is that fixed cost). The caller stops the server.
    """
    server = OPAServer(opa, ["--bundle", str(bundle), "--verification-key", str(verification_key)])
    start = time.perf_counter()
    server.start(wait_healthy=False)
    try:
        deadline = start + timeout
        while not _healthy(server.port):
            if server.proc is not None and server.proc.poll() is not None:
                raise RuntimeError(f"OPA exited with {server.proc.returncode} while activating {bundle.name}")
            if time.perf_counter() > deadline:
                raise RuntimeError(f"OPA did not activate {bundle.name} within {timeout} s")
            time.sleep(0.005)
        return server, time.perf_counter() - start
    except BaseException:
        server.stop()
        raise
