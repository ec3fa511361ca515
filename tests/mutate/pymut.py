"""Python mutants of the security core with mutmut 2.5: each module against its own fast tests, a table and JSON.

mutmut 2.5 mutates a file in place, runs a test command, and restores the file
(the editable install reads the source tree, so the tests see the mutant).
Each module of the security core is run with the test files that should kill
its mutants (seconds per mutant, not minutes); mutmut's cache
(``.mutmut-cache``) keeps results between runs. Results go to
``build/mutate/python.json`` as the run goes, with the diff of every survivor.
Each module gets a time budget (mutmut tests its mutants in source order; the cache keeps what is done, so a
later run continues). Run it through ``make mutate`` (``MUTATE_ARGS="--half python --only runtime/normalize.py"``).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "mutate"
MUTMUT = "mutmut==2.5.1"

#: Module of the security core -> the test files that should kill its mutants, most telling first.
TARGETS: dict[str, list[str]] = {
    "runtime/normalize.py": ["tests/test_normalize_oracle.py", "tests/test_enforcer.py", "tests/test_properties.py"],
    "compiler/policy/integrity.py": ["tests/test_integrity.py", "tests/test_vectors.py"],
    "compiler/policy/canonical.py": ["tests/test_integrity.py", "tests/test_vectors.py", "tests/test_model.py"],
    "compiler/policy/keyring.py": ["tests/test_trust.py", "tests/test_integrity.py"],
    "compiler/policy/rotation.py": ["tests/test_trust.py"],
    "compiler/bundle/verify.py": ["tests/test_signature_refusals.py", "tests/test_bundle_roots.py", "tests/test_bundle.py"],
    "compiler/bundle/roots.py": ["tests/test_bundle_roots.py"],
    "runtime/floor.py": ["tests/test_floor.py", "tests/test_trust.py", "tests/test_client.py"],
    "runtime/client.py": ["tests/test_client.py", "tests/test_trust.py"],
    "runtime/memo.py": ["tests/test_enforcer_memo.py", "tests/test_enforcer.py"],
    "runtime/decision.py": ["tests/test_decision_contract.py", "tests/test_enforcer.py", "tests/test_batch.py"],
    "runtime/enforcer.py": ["tests/test_enforcer.py", "tests/test_enforcer_memo.py", "tests/test_ratelimit.py"],
}


def _mutmut(*args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _ensure_mutmut() -> None:
    probe = subprocess.run([sys.executable, "-c", "import mutmut"], capture_output=True, check=False)
    if probe.returncode != 0:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", MUTMUT], check=True)


def _results() -> dict[str, dict[str, object]]:
    """Per module: mutants, killed, survivors (id, line and diff), read from mutmut's cache (``.mutmut-cache``, an
    SQLite file: mutmut's own ``junitxml`` report trips over mutants it re-created between budgeted runs)."""
    cache = ROOT / ".mutmut-cache"
    per: dict[str, dict[str, object]] = {}
    if not cache.exists():
        return per
    with sqlite3.connect(f"file:{cache}?mode=ro", uri=True) as db:
        rows = db.execute('SELECT m.id, s.filename, l.line_number, l.line, m.status FROM Mutant m '
                          'JOIN Line l ON m.line = l.id JOIN SourceFile s ON l.sourcefile = s.id '
                          'ORDER BY s.filename, l.line_number').fetchall()
    for ident, module, number, line, state in rows:
        row = per.setdefault(module, {"mutants": 0, "killed": 0, "survived": [], "untested": 0})
        row["mutants"] = int(row["mutants"]) + 1  # type: ignore[call-overload]
        if state == "ok_killed":
            row["killed"] = int(row["killed"]) + 1  # type: ignore[call-overload]
        elif state in ("bad_survived", "bad_timeout", "ok_suspicious"):
            shown = _mutmut("show", str(ident)).stdout.strip()
            row["survived"].append({"id": ident, "line": number + 1, "source": line.strip(),  # type: ignore[union-attr]
                                    "status": state, "diff": shown if shown.startswith("---") else ""})
        else:
            row["untested"] = int(row["untested"]) + 1  # type: ignore[call-overload]
    return per


def _write(per: dict[str, dict[str, object]], seconds: float) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "python.json").write_text(json.dumps({"tool": MUTMUT, "seconds": round(seconds), "modules": per},
                                                indent=2) + "\n", encoding="utf-8")


def _run_module(module: str, tests: list[str], budget: float) -> None:
    """mutmut on one module for at most ``budget`` seconds (it tests mutants in source order; the cache keeps what
    is done, so a later run goes on where this one stopped). The module is restored from git whatever happens."""
    runner = f"{sys.executable} -m pytest -x -q -p no:cacheprovider {' '.join(tests)}"
    print(f"mutmut: {module} against {', '.join(tests)} (budget {budget:g} s)", flush=True)
    process = subprocess.Popen([sys.executable, "-m", "mutmut", "run", "--paths-to-mutate", module, "--runner", runner,
                                "--tests-dir", "tests", "--no-progress", "--simple-output"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)  # mutmut restores the file it mutated on an interrupt
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    finally:
        subprocess.run(["git", "checkout", "--", module], cwd=ROOT, check=False)


def run(only: list[str] | None, budget: float) -> int:
    """Mutate each selected module against its tests (``budget`` seconds each); print the table; JSON."""
    _ensure_mutmut()
    started = time.monotonic()
    for module, tests in TARGETS.items():
        if only and module not in only:
            continue
        _run_module(module, tests, budget)
        _write(_results(), time.monotonic() - started)
    per = _results()
    _write(per, time.monotonic() - started)
    print("\n| module | mutants | tested | killed | survived |\n|---|---|---|---|---|")  # tested: within the budget
    for module, row in sorted(per.items()):
        survivors = row["survived"]
        assert isinstance(survivors, list)
        tested = int(row["killed"]) + len(survivors)  # type: ignore[call-overload]
        print(f"| {module} | {row['mutants']} | {tested} | {row['killed']} | {len(survivors)} |")
    killed = sum(int(row["killed"]) for row in per.values())  # type: ignore[call-overload]
    tested = killed + sum(len(row["survived"]) for row in per.values())  # type: ignore[arg-type]
    print(f"\n{killed}/{tested} tested mutants killed ({killed / max(1, tested):.1%}); JSON: {OUT / 'python.json'}")
    for module, row in sorted(per.items()):
        for survivor in row["survived"]:  # type: ignore[attr-defined]
            print(f"SURVIVED {module}:{survivor['line']} #{survivor['id']} {survivor['source']}\n{survivor['diff']}")
    return 0
