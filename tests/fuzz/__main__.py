"""``python -m tests.fuzz``: see the package docstring. Exit status 0 when no target found anything."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"
EXAMPLES = ROOT / "policies" / "examples"
OPA_VECTORS = VECTORS / "opa-bundle"
TARGET_NAMES = ("policy", "content", "bundle", "tar", "decisions")
#: The fields of input.action the contract defines (DESIGN.md section 4), of every type.
CONTRACT_FIELDS = frozenset({"type", "name", "host", "protocol", "path", "operation", "provider", "kind", "amount"})
#: The example policies the decisions target decides under (each with its own embedded engine).
DECISION_POLICIES = ("coding-assistant", "research-agent", "locked-down")
#: Where libFuzzer saves an input that made a target fail (build/ is git-ignored).
FINDINGS = ROOT / "build" / "fuzz"


# -- targets (the project is imported lazily, after atheris has hooked imports) ------------------------------


class Targets:
    """The fuzz targets and their seeds; built once per process."""

    def __init__(self) -> None:
        from sekuire.compiler import Keyring
        from sekuire.compiler.bundle.keys import load_public_key

        self.keyring = Keyring.load(EXAMPLES / "keyring.json")
        self.bundle_key = load_public_key(OPA_VECTORS / "test-rsa-public.pem")

    def policy(self, data: bytes) -> None:
        from sekuire.compiler import PolicyError, parse_policy
        from sekuire.compiler.policy.canonical import strict_loads

        try:
            parse_policy(strict_loads(data), self.keyring, source="fuzz")
        except PolicyError as exc:
            _one_line(exc)

    def content(self, data: bytes) -> None:
        from sekuire.compiler import CompileError, PolicyError
        from sekuire.compiler.policy.canonical import strict_loads
        from sekuire.compiler.rego.compile import compile_policy

        from tests.security_support import unsigned_policy

        try:
            compile_policy(unsigned_policy(strict_loads(data)))
        except (PolicyError, CompileError) as exc:
            _one_line(exc)

    def bundle(self, data: bytes) -> None:
        from sekuire.compiler.bundle.tarball import BundleLimits, read_bundle
        from sekuire.compiler.bundle.verify import decode_signature, verify_bundle
        from sekuire.compiler.errors import BundleError

        try:
            bundle = read_bundle(data, source="fuzz", limits=BundleLimits(max_total_bytes=8 << 20))
            bundle.data, bundle.modules  # noqa: B018 - the lazy views must fail cleanly too
            decode_signature(bundle)
            verify_bundle(bundle, key=self.bundle_key)
        except BundleError as exc:
            _one_line(exc)

    def tar(self, data: bytes) -> None:
        """The bundle target below the gzip layer, where byte mutations reach the tar and JSON parsers."""
        import gzip

        self.bundle(gzip.compress(data, compresslevel=1, mtime=0))

    def decisions(self, data: bytes) -> None:
        """A raw action through the normaliser and the engines, against the independent reference.

        The runtime must refuse exactly what the reference refuses; on what both accept, the embedded
        engine (and the real OPA, when ``$SEKUIRE_OPA`` names one) must give the reference's decision;
        the raw action sent directly to the engine must never be allowed when the reference denies or
        refuses it. Any difference is a finding.
        """
        from sekuire.runtime.errors import InvalidActionError
        from sekuire.runtime.normalize import normalize_action

        from tests import reference

        try:
            action = json.loads(data)
        except (ValueError, RecursionError):
            return
        if not isinstance(action, dict) or "args" in action:  # the reference has no args (extensions read them)
            return
        try:
            runtime: dict[str, Any] | None = normalize_action(action)
        except InvalidActionError:
            runtime = None
        oracle = reference.normalize_action(action)
        if (runtime is None) != (oracle is None):
            raise AssertionError(f"normaliser disagrees with the reference on {action!r}: {runtime!r} vs {oracle!r}")
        for name, (content, engines, path) in self._deciders().items():
            for label, engine in engines.items():
                direct = engine.evaluate(path, {"action": action, "context": {"agent": "fuzz"}})
                # The Rego ignores fields outside the contract (the runtime refuses them): judge the rest.
                known = reference.normalize_action({k: v for k, v in action.items() if k in CONTRACT_FIELDS})
                if direct.get("allow") is True and _within_limits(action) and (
                    known is None or not self._allowed(content, known)
                ):
                    raise AssertionError(f"{label} allowed the raw {action!r} under {name}; the reference does not")
                if runtime is None:
                    continue
                given = {**runtime, "usage": {"minute": 0, "hour": 0}} if runtime["type"] == "rate_limit" else runtime
                ours = engine.evaluate(path, {"action": given, "context": {"agent": "fuzz"}})
                theirs = reference.decide(content, {"action": given})
                mine = (ours.get("allow"), sorted(v["rule"] for v in ours.get("violations", [])))
                expected = (theirs["allow"], sorted(v["rule"] for v in theirs["violations"]))
                if mine != expected:
                    raise AssertionError(f"{label} under {name} on {given!r}: {mine} vs the reference's {expected}")
        self.decided += 1

    @staticmethod
    def _allowed(content: dict[str, Any], action: dict[str, Any]) -> bool:
        from tests import reference

        given = {**action, "usage": {"minute": 0, "hour": 0}} if action["type"] == "rate_limit" else action
        return bool(reference.decide(content, {"action": given})["allow"])

    def _deciders(self) -> dict[str, tuple[dict[str, Any], dict[str, Any], str]]:
        if not hasattr(self, "_built"):
            from sekuire.compiler import load_policy
            from sekuire.runtime import EmbeddedEngine, OPAEngine
            from sekuire.runtime.engine import decision_path

            self.decided = 0
            self._built: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {}
            opa = self._opa()
            for name in DECISION_POLICIES:
                policy = load_policy(EXAMPLES / f"{name}.json", self.keyring)
                engines: dict[str, Any] = {"embedded": EmbeddedEngine.from_policy(policy)}
                if opa is not None:
                    engines["opa"] = OPAEngine(opa, decision_ttl=None)
                self._built[name] = (policy.raw_content, engines, decision_path(policy.workspace_id))
        return self._built

    def _opa(self) -> str | None:
        """A real OPA serving the example bundles on loopback for this process, when ``$SEKUIRE_OPA`` is set."""
        import atexit
        import os

        opa = os.environ.get("SEKUIRE_OPA")
        if not opa or not os.access(opa, os.X_OK):
            return None
        from tests.conftest import OPAServer
        from tests.security_support import load_example, signed_bundle

        directory = Path(tempfile.mkdtemp(prefix="sekuire-fuzz-opa-"))
        args: list[str] = ["--skip-verify"]
        for name in DECISION_POLICIES:
            path = directory / f"{name}.tar.gz"
            path.write_bytes(signed_bundle(load_example(name)))
            args += ["--bundle", str(path)]
        server = OPAServer(opa, args).start(health_query="?bundles")
        atexit.register(server.stop)
        return server.url

    def seeds(self, name: str) -> list[bytes]:
        documents = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(EXAMPLES.glob("*.json"))
                     if path.name != "keyring.json"]
        if name == "policy":
            invalid = json.loads((VECTORS / "policy-envelope.json").read_text(encoding="utf-8"))["invalid"]
            return [json.dumps(d).encode() for d in documents + [case["policy"] for case in invalid]]
        if name == "content":
            return [json.dumps(d["content"]).encode() for d in documents]
        if name == "decisions":
            corpus = json.loads((ROOT / "tests" / "data" / "bypass_corpus.json").read_text(encoding="utf-8"))
            return [json.dumps(case["action"]).encode() for case in corpus if isinstance(case.get("action"), dict)]
        bundles = [(OPA_VECTORS / "bundle.tar.gz").read_bytes(), *self._signed_examples(documents)]
        if name == "tar":
            import gzip

            return [gzip.decompress(bundle) for bundle in bundles]
        return bundles

    @staticmethod
    def _signed_examples(documents: list[dict[str, Any]]) -> Iterator[bytes]:
        from sekuire.compiler import Keyring, parse_policy
        from sekuire.compiler.bundle.signing import BundleSigner
        from sekuire.compiler.bundle.tarball import build_bundle
        from sekuire.compiler.rego.compile import compile_policy

        signer = BundleSigner((OPA_VECTORS / "test-rsa-private.pem").read_bytes())
        keyring = Keyring.load(EXAMPLES / "keyring.json")
        for document in documents:
            yield build_bundle(compile_policy(parse_policy(document, keyring)), signer=signer)


def _within_limits(action: dict[str, Any]) -> bool:
    """Inside the runtime's size limits (strings of 4,096 characters, paths of 256 segments): past them the runtime
    refuses a value as a bad argument while a direct query is decided on its meaning (docs/security.md)."""
    from sekuire.runtime.normalize import MAX_PATH_SEGMENTS, MAX_VALUE_LENGTH

    strings = [value for value in action.values() if isinstance(value, str)]
    path = action.get("path")
    return all(len(value) <= MAX_VALUE_LENGTH for value in strings) and not (
        isinstance(path, str) and path.count("/") > MAX_PATH_SEGMENTS
    )


def _one_line(exc: Exception) -> None:
    if "\n" in str(exc):
        raise AssertionError(f"a multi-line error message: {str(exc)!r}") from exc


# -- atheris ---------------------------------------------------------------------------------------------------


def _dictionary(seeds: list[bytes]) -> str:
    """A libFuzzer dictionary of the JSON keys and short strings in the seeds, so mutations keep their shape."""
    import re

    tokens = {match for seed in seeds for match in re.findall(rb'"[A-Za-z0-9_.*:/-]{1,40}"', seed)}
    tokens |= {b"{", b"}", b"[", b"]", b":", b",", b"null", b"true", b"false", b"-1", rb'"\u0000"', rb'"\ud800"'}
    # libFuzzer's dictionary syntax: one quoted token per line, with \\ and \" escaped.
    escaped = (token.decode().replace("\\", "\\\\").replace('"', '\\"') for token in sorted(tokens))
    return "".join(f'"{token}"\n' for token in escaped)


def _atheris_worker(name: str, seconds: int, corpus: Path) -> None:
    """Runs in its own process: libFuzzer exits when the time is up or at the first finding."""
    import atheris

    with atheris.instrument_imports(include=["sekuire"]):
        import sekuire.compiler.bundle.tarball  # noqa: F401 - loaded here to be instrumented
        import sekuire.compiler.bundle.verify  # noqa: F401
        import sekuire.compiler.policy.document  # noqa: F401
        import sekuire.compiler.rego.compile  # noqa: F401
    targets = Targets()
    for index, seed in enumerate(targets.seeds(name)):
        (corpus / f"seed-{index}").write_bytes(seed)
    target: Callable[[bytes], None] = getattr(targets, name)
    FINDINGS.mkdir(parents=True, exist_ok=True)
    argv = [sys.argv[0], str(corpus), f"-max_total_time={seconds}", "-timeout=20", "-rss_limit_mb=4096",
            "-max_len=262144", "-print_final_stats=1", f"-artifact_prefix={FINDINGS}/{name}-"]
    if name in ("policy", "content"):
        (corpus.parent / f"{name}.dict").write_text(_dictionary(targets.seeds(name)), encoding="utf-8")
        argv.append(f"-dict={corpus.parent / f'{name}.dict'}")
    atheris.Setup(argv, target)
    atheris.Fuzz()


def _run_atheris(names: list[str], seconds: int, record: dict[str, Any]) -> bool:
    ok = True
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"sekuire-fuzz-{name}-") as work:
            corpus = Path(work) / "corpus"
            corpus.mkdir()
            print(f"== {name}: atheris for {seconds} s", flush=True)
            command = [sys.executable, "-m", "tests.fuzz", "--worker", name, "--seconds", str(seconds),
                       "--corpus", str(corpus)]
            code = subprocess.run(command, cwd=ROOT, check=False).returncode
            record[name] = {"finding": code != 0, "exit": code}
            if code != 0:
                print(f"== {name}: FINDING (exit {code}); the input is saved in {FINDINGS}/{name}-*", flush=True)
                ok = False
    return ok


# -- hypothesis ------------------------------------------------------------------------------------------------


def _mutated(draw: Any, st: Any, seeds: list[bytes]) -> bytes:
    """A seed with one to eight byte-level mutations (the kinds libFuzzer applies)."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.sampled_from(b'\x00\xff"{}[]:,0-9.eE\\/'))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del data[at:]
        else:
            data[at:at] = data[at:at + draw(st.integers(1, 64))]
    return bytes(data)


def _run_hypothesis(names: list[str], seconds: int, record: dict[str, Any]) -> bool:
    from tests.hypothesis_profiles import PROPERTY_SETTINGS  # noqa: F401 - registers the profiles

    targets = Targets()
    ok = True
    for name in names:
        passed, runs = _hypothesis_target(name, getattr(targets, name), targets.seeds(name), seconds)
        record[name] = {"finding": not passed, "inputs": runs}
        if name == "decisions":
            record[name]["decided"] = getattr(targets, "decided", 0)
        ok = ok and passed
    return ok


def _hypothesis_target(name: str, target: Callable[[bytes], None], seeds: list[bytes], seconds: int) -> tuple[bool, int]:
    """Batches of random and mutated inputs, each batch with a new seed, until ``seconds`` have passed."""
    from hypothesis import given, seed, settings
    from hypothesis import strategies as st

    inputs = st.one_of(st.binary(max_size=2048), st.composite(lambda draw: _mutated(draw, st, seeds))())
    runs = 0

    @settings(settings.get_profile("fuzz"), max_examples=300)
    @given(data=inputs)
    def batch(data: bytes) -> None:
        nonlocal runs
        runs += 1
        target(data)

    print(f"== {name}: hypothesis for {seconds} s", flush=True)
    deadline, number, ok = time.monotonic() + seconds, 0, True
    while ok and time.monotonic() < deadline:
        number += 1
        try:
            seed(number)(batch)()
        except Exception as exc:  # hypothesis printed the falsifying example
            print(f"== {name}: FINDING: {type(exc).__name__}: {exc}", flush=True)
            ok = False
    print(f"== {name}: {runs} inputs", flush=True)
    return ok, runs


# -- command line ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--seconds", type=int, default=60, help="time per target (default 60)")
    parser.add_argument("--target", action="append", choices=TARGET_NAMES, help="a target (default: all)")
    parser.add_argument("--engine", choices=("atheris", "hypothesis"), help="default: atheris when installed")
    parser.add_argument("--worker", choices=TARGET_NAMES, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _atheris_worker(args.worker, args.seconds, args.corpus)
        return 0
    names = args.target or list(TARGET_NAMES)
    engine = args.engine or ("atheris" if importlib.util.find_spec("atheris") else "hypothesis")
    record: dict[str, Any] = {}
    started = time.time()
    with contextlib.suppress(KeyboardInterrupt):
        run = _run_atheris if engine == "atheris" else _run_hypothesis
        ok = run(names, args.seconds, record)
        _write_summary(engine, args.seconds, started, record)
        print("no findings" if ok else "FINDINGS: see above", flush=True)
        return 0 if ok else 1
    return 130


def _write_summary(engine: str, seconds: int, started: float, record: dict[str, Any]) -> None:
    """build/fuzz/run-<time>.json: what ran, for how long, how many inputs, and whether it found anything."""
    FINDINGS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started))
    summary = {"engine": engine, "seconds_per_target": seconds, "started": stamp,
               "elapsed_s": round(time.time() - started, 1), "targets": record}
    path = FINDINGS / f"run-{stamp}.json"
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"== summary: {path}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
