"""``python -m tests.mutate [--max N] [--seed S] [--only MODULE]``: Rego mutants of policies/rego, killed or not.

Each mutant changes one line of one template (``policies/rego/<m>.rego.j2``,
never a ``_test`` file): negate a condition or drop a negation, drop a body
line, swap ``allowed`` and ``blocked``, change a comparison, swap ``true`` and
``false``. The mutated template is written in place (the editable install reads
it), and the mutant is killed when ``opa test`` on the rendered library fails,
or, if that passes, when the bypass corpus or the differential test fails (a
fast ``pytest -x``, with the batch and explanation tests last). The original is always restored. A table goes to stdout
and JSON to ``build/mutate/rego.json``; survivors are listed with their diff.
Python mutants of the security core come from mutmut (:mod:`.pymut`); ``--half`` picks.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "policies" / "rego"
OUT = ROOT / "build" / "mutate"
SECOND_LINE = ["tests/test_bypass_corpus.py", "tests/test_differential.py", "tests/test_rego_library.py",
               "tests/test_fast_rules.py", "tests/test_extensions.py", "tests/test_batch.py", "tests/test_explain.py"]
_COMPARISONS = [(" <= ", " < "), (" < ", " <= "), (" >= ", " > "), (" > ", " >= "), (" == ", " != "), (" != ", " == ")]
_SKIP = re.compile(r"^\s*(#|package\b|import\b|$|\}|default\b)")


@dataclass(frozen=True)
class Mutant:
    """One changed line of one template."""

    module: str
    line: int
    kind: str
    before: str
    after: str


def _in_body(lines: list[str], index: int) -> bool:
    """Whether line ``index`` is a condition inside a rule body (indented by one tab, not a header or a brace)."""
    text = lines[index]
    return text.startswith("\t") and not text.startswith("\t\t") and not text.rstrip().endswith(("{", "[", "(", ","))


def mutants(module: str, text: str) -> Iterator[Mutant]:
    """Every mutant of one template's text."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if _SKIP.match(line):
            continue
        number = index + 1
        if _in_body(lines, index):
            stripped = line.strip()
            if stripped.startswith("not "):
                yield Mutant(module, number, "drop-not", line, line.replace("not ", "", 1))
            elif " := " not in stripped and not stripped.startswith("some "):
                yield Mutant(module, number, "negate", line, "\tnot " + stripped)
            yield Mutant(module, number, "drop-line", line, "")
        if "allowed" in line or "blocked" in line:
            swapped = line.replace("allowed", "\0").replace("blocked", "allowed").replace("\0", "blocked")
            yield Mutant(module, number, "swap-lists", line, swapped)
        for old, new in _COMPARISONS:
            if old in line:
                yield Mutant(module, number, "comparison", line, line.replace(old, new, 1))
                break
        for old, new in (("true", "false"), ("false", "true")):
            if re.search(rf"\b{old}\b", line):
                yield Mutant(module, number, "boolean", line, re.sub(rf"\b{old}\b", new, line, count=1))
                break


def _opa_test_fails() -> bool:
    """``make rego-test``, in process: render the (mutated) library with its tests and the example extension, then
    ``opa test`` it (a template that no longer renders or compiles fails too)."""
    import contextlib
    import io
    import shutil

    from sekuire.compiler.cli import main as sekuire
    from sekuire.compiler.rego import library

    library._environment.cache_clear()  # the template just changed
    out = OUT / "rego"
    shutil.rmtree(out, ignore_errors=True)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = sekuire(["policy", "rego", "--tests", "--extension", "policies/examples/extensions", "--out", str(out)])
    if code != 0:
        return True
    opa = os.environ.get("SEKUIRE_OPA") or str(ROOT / ".tools" / "bin" / "opa")
    return subprocess.run([opa, "test", "--v0-compatible=false", str(out)], capture_output=True,
                          check=False).returncode != 0


def _killed(mutant: Mutant, timeout: float) -> str:
    """How the mutant was killed ("opa test", "pytest", "timeout"), or "" when it survived."""
    if _opa_test_fails():
        return "opa test"
    try:
        tests = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *SECOND_LINE],
                               cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout"
    return "pytest" if tests.returncode != 0 else ""


def run(selected: list[Mutant], timeout: float) -> list[dict[str, object]]:
    """Apply, test and restore each mutant; the results."""
    results = []
    for number, mutant in enumerate(selected, 1):
        path = TEMPLATES / f"{mutant.module}.rego.j2"
        original = path.read_text(encoding="utf-8")
        lines = original.split("\n")
        lines[mutant.line - 1] = mutant.after
        started = time.monotonic()
        try:
            path.write_text("\n".join(lines), encoding="utf-8")
            killer = _killed(mutant, timeout)
        finally:
            path.write_text(original, encoding="utf-8")
        results.append({**asdict(mutant), "killed_by": killer, "seconds": round(time.monotonic() - started, 1)})
        _write(results, len(selected))  # as it goes: a long run stopped early still leaves its results
        print(f"[{number}/{len(selected)}] {mutant.module}:{mutant.line} {mutant.kind}: "
              f"{killer or 'SURVIVED'}", flush=True)
    return results


def _write(results: list[dict[str, object]], generated: int) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "rego.json").write_text(json.dumps({"generated": generated, "tested": results}, indent=2) + "\n",
                                   encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutate", description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=0, help="test at most N mutants, sampled (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--only", action="append", help="a template name (network, tools, ...); repeatable")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant run (default 600)")
    parser.add_argument("--budget", type=float, default=1800, help="seconds per Python module (default 1800)")
    parser.add_argument("--half", choices=["rego", "python", "both"], default="both",
                        help="Rego mutants, Python mutants of the security core (mutmut; --only takes a path), or both")
    args = parser.parse_args(argv)
    if args.half in ("python", "both"):
        from .pymut import run as run_python

        run_python([m for m in args.only or [] if m.endswith(".py")], budget=args.budget)
        if args.half == "python":
            return 0
    every = [m for path in sorted(TEMPLATES.glob("*.rego.j2")) if not path.name.endswith("_test.rego.j2")
             for m in mutants(path.name.removesuffix(".rego.j2"), path.read_text(encoding="utf-8"))
             if not [o for o in args.only or [] if not o.endswith(".py")] or m.module in args.only]
    # In a seeded random order: a run stopped early (results are written as it goes) is a fair sample.
    selected = random.Random(args.seed).sample(every, args.max if 0 < args.max < len(every) else len(every))
    results = run(selected, args.timeout)
    _write(results, len(every))
    totals, killed = Counter(r["module"] for r in results), Counter(r["module"] for r in results if r["killed_by"])
    print("\n| module | mutants | killed | survived |\n|---|---|---|---|")
    for module in sorted(totals):
        print(f"| {module} | {totals[module]} | {killed[module]} | {totals[module] - killed[module]} |")
    rate = sum(killed.values()) / max(1, len(results))
    print(f"\n{sum(killed.values())}/{len(results)} killed ({rate:.1%}) of {len(every)} generated; JSON: {OUT / 'rego.json'}")
    for r in results:
        if not r["killed_by"]:
            print(f"SURVIVED {r['module']}:{r['line']} {r['kind']}\n  - {str(r['before']).strip()}\n  + {str(r['after']).strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
