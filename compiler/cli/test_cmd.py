"""``sekuire policy test CASES``: decision tests for policy authors, run on the embedded engine, the real OPA, or both.

A case file (YAML or JSON) is a list of cases, or ``{"cases": [...]}``; each case::

    - name: refunds up to 400 pass          # optional; defaults to "case <n>"
      action: {type: tool, name: "payments:refund", args: {amount: 400}}
      expect: allow                         # or deny
      rules: [ext.refund_limit]             # optional: exactly these rule ids (order ignored)
      agent: support-bot                    # optional context.agent (default "default")

Each case is decided like ``sekuire policy eval`` (the action normalised as the
enforcer sends it; a rate_limit action may carry its ``usage``). ``--engine
opa`` starts the real OPA (``$SEKUIRE_OPA``, else ``opa`` on the PATH) on a free
loopback port for the run and stops it; ``both`` fails a case on which the two
engines disagree. Output: text (a line per failure and a summary line), json,
or JUnit XML for CI systems. Exit 0 when every case passes, 3 when any fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CompileError, PolicyFormatError, SekuireError
from ..files import read_limited
from .exitcodes import EXIT_OK, EXIT_VIOLATION

__all__ = ["register"]

_MAX_CASES_BYTES = 16 << 20


@dataclass
class _Case:
    name: str
    action: dict[str, Any]
    expect: str
    rules: list[str] | None
    agent: str
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def register(policy: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``policy test`` to the ``policy`` subcommands."""
    from .compile_cmd import add_extension_option
    from .options import add_verify_options

    test = policy.add_parser("test", help="run decision tests (YAML or JSON cases) against a policy")
    test.add_argument("cases", metavar="CASES", help="the case file (YAML or JSON)")
    source = test.add_mutually_exclusive_group()
    source.add_argument("--file", default=None, metavar="FILE", help="a policy.json, compiled in memory (default: policy.json)")
    source.add_argument("--bundle", metavar="FILE", help="a bundle built by `policy build`")
    test.add_argument("--verification-key", metavar="KEY", help="public key that verifies --bundle")
    test.add_argument("--allow-unsigned-bundle", action="store_true", help="test a bundle without signatures")
    test.add_argument("--engine", choices=("embedded", "opa", "both"), default="embedded",
                      help="who decides: the embedded engine (default), the real OPA, or both (they must agree)")
    test.add_argument("--format", choices=("text", "json", "junit"), default="text", help="output format (default: text)")
    add_extension_option(test)
    add_verify_options(test)
    test.set_defaults(handler=_test)


def _load_cases(path: str) -> list[_Case]:
    import yaml

    try:
        document = yaml.safe_load(read_limited(path, _MAX_CASES_BYTES).decode("utf-8"))
    except OSError as exc:
        raise PolicyFormatError(f"cannot read: {exc.strerror or exc}", source=path) from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PolicyFormatError(f"not YAML or JSON: {str(exc).splitlines()[0]}", source=path) from None
    items = document.get("cases") if isinstance(document, dict) else document
    if not isinstance(items, list) or not items:
        raise PolicyFormatError("expected a non-empty list of cases (or {cases: [...]})", source=path)
    cases = []
    for index, item in enumerate(items):
        where = f"/cases/{index}"
        if not isinstance(item, dict) or not isinstance(item.get("action"), dict):
            raise PolicyFormatError(f"{where}: a case needs an action object", source=path)
        unknown = set(item) - {"name", "action", "expect", "rules", "agent"}
        if unknown:
            raise PolicyFormatError(f"{where}: unknown fields {sorted(map(str, unknown))}", source=path)
        if item.get("expect") not in ("allow", "deny"):
            raise PolicyFormatError(f"{where}/expect: must be allow or deny", source=path)
        rules = item.get("rules")
        if rules is not None and not (isinstance(rules, list) and all(isinstance(r, str) for r in rules)):
            raise PolicyFormatError(f"{where}/rules: must be a list of rule ids", source=path)
        cases.append(_Case(str(item.get("name") or f"case {index + 1}"), item["action"], item["expect"], rules,
                           str(item.get("agent") or "default")))
    return cases


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _LocalOPA:
    """``opa run --server`` on 127.0.0.1 serving one bundle file, for the length of the run."""

    def __init__(self, bundle: Path) -> None:
        opa = os.environ.get("SEKUIRE_OPA") or shutil.which("opa")
        if not opa:
            raise SekuireError("--engine opa needs the opa binary: set $SEKUIRE_OPA or put opa on the PATH")
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.proc = subprocess.Popen(
            [opa, "run", "--server", "--addr", self.url.removeprefix("http://"), "--log-level", "error",
             "--skip-verify", "--bundle", str(bundle)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def wait(self) -> None:
        import httpx

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SekuireError(f"opa exited with {self.proc.returncode} before serving the bundle")
            try:
                if httpx.get(f"{self.url}/health?bundles", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise SekuireError("opa did not become healthy within 30 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _test(args: argparse.Namespace) -> int:
    from ...runtime.engine import EmbeddedEngine, decision_path
    from ...runtime.normalize import normalize_action
    from ...runtime.opa import OPAEngine
    from ..bundle.keys import load_verification_key
    from ..bundle.tarball import build_bundle, load_bundle
    from .compile_cmd import action_input, compiled_from
    from .options import policy_from

    cases = _load_cases(args.cases)
    if args.bundle:
        if args.extension:
            raise CompileError("--extension applies to --file: a bundle carries the extensions it was built with")
        bundle_bytes = Path(args.bundle).read_bytes()
        key = load_verification_key(args.verification_key) if args.verification_key else None
        embedded = EmbeddedEngine.from_bundle(bundle_bytes, verification_key=key, allow_unsigned=args.allow_unsigned_bundle)
        metadata = (load_bundle(args.bundle).manifest or {}).get("metadata") or {}
        workspace = str(metadata.get("workspace_id", ""))
    else:
        args.file = args.file or "policy.json"
        policy = policy_from(args, args.file)
        compiled = compiled_from(args, policy)
        embedded = EmbeddedEngine.from_compiled(compiled)
        bundle_bytes = build_bundle(compiled)
        workspace = policy.workspace_id
    engines: dict[str, Any] = {}
    if args.engine in ("embedded", "both"):
        engines["embedded"] = embedded
    local: _LocalOPA | None = None
    scratch = tempfile.TemporaryDirectory(prefix="sekuire-test-")
    try:
        if args.engine in ("opa", "both"):
            bundle_file = Path(scratch.name) / "bundle.tar.gz"
            bundle_file.write_bytes(bundle_bytes)
            local = _LocalOPA(bundle_file)
            local.wait()
            engines["opa"] = OPAEngine(local.url, decision_ttl=None)
        path = decision_path(workspace)
        for case in cases:
            try:
                document = {"action": action_input(dict(case.action), normalize_action),
                            "context": {"agent": case.agent, "workspace": workspace}}
            except SekuireError as exc:
                case.failures.append(f"bad action: {exc}")
                continue
            for name, engine in engines.items():
                case.results[name] = engine.evaluate(path, document)
            _judge(case)
    finally:
        for engine in engines.values():
            engine.close()
        embedded.close()
        if local is not None:
            local.stop()
        scratch.cleanup()
    return _report(args, cases)


def _judge(case: _Case) -> None:
    results = list(case.results.items())
    if len(results) == 2 and results[0][1] != results[1][1]:
        case.failures.append("the embedded engine and OPA disagree: "
                             f"{json.dumps(results[0][1], sort_keys=True)} vs {json.dumps(results[1][1], sort_keys=True)}")
    for name, result in results:
        allowed = result.get("allow") is True
        rules = sorted(v.get("rule", "") for v in result.get("violations") or [])
        if allowed != (case.expect == "allow"):
            case.failures.append(f"{name}: expected {case.expect}, got {'allow' if allowed else 'deny'} {rules}")
        elif case.rules is not None and rules != sorted(case.rules):
            case.failures.append(f"{name}: expected rules {sorted(case.rules)}, got {rules}")


def _report(args: argparse.Namespace, cases: list[_Case]) -> int:
    failed = [case for case in cases if case.failures]
    summary = f"{len(cases) - len(failed)} passed, {len(failed)} failed"
    if args.format == "json":
        print(json.dumps({"passed": len(cases) - len(failed), "failed": len(failed), "cases": [
            {"name": c.name, "passed": not c.failures, "failures": c.failures, "results": c.results} for c in cases
        ]}, indent=2, sort_keys=True))
    elif args.format == "junit":
        suite = ElementTree.Element("testsuite", name=f"sekuire policy test {args.cases}", tests=str(len(cases)),
                                    failures=str(len(failed)), errors="0", skipped="0")
        for case in cases:
            element = ElementTree.SubElement(suite, "testcase", classname="sekuire.policy", name=case.name)
            for failure in case.failures:
                ElementTree.SubElement(element, "failure", message=failure[:200]).text = failure
        ElementTree.indent(suite)
        sys.stdout.write(ElementTree.tostring(suite, encoding="unicode") + "\n")
    else:
        for case in failed:
            for failure in case.failures:
                print(f"FAIL {case.name}: {failure}")
        print(summary)
    return EXIT_OK if not failed else EXIT_VIOLATION
