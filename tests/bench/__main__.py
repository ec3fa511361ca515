"""``python -m tests.bench [--quick] [--out .bench/results.json] [--only GROUP ...] [--actions TYPE ...]``.

Prints one Markdown table (every row measured in this run, on the same
generated policies and inputs, with its ratio to its anchor and the issue's
targets) and writes it as JSON to ``--out`` and as Markdown beside it.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from sekuire.compiler import __version__ as sekuire_version

from ..conftest import find_opa
from .opa import opa_version
from .report import Report
from .suites import GROUPS, HEADINGS, Bench, Settings, progress, run
from .workload import ACTION_TYPES, LIST_COUNT, Workload

DEFAULT_OUT = Path(".bench/results.json")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="few iterations and small policies: a smoke run, not numbers to quote"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT}; .md beside it)")
    parser.add_argument("--only", nargs="+", choices=GROUPS, metavar="GROUP", help=f"row groups to run: {', '.join(GROUPS)}")
    parser.add_argument(
        "--actions", nargs="+", choices=ACTION_TYPES, metavar="TYPE", help=f"action types: {', '.join(ACTION_TYPES)}"
    )
    parser.add_argument("--opa", help="the OPA binary (default: $SEKUIRE_OPA, .tools/bin/opa, PATH)")
    return parser.parse_args(argv)


def _git_commit() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
        )
    except OSError:
        return ""
    return result.stdout.strip()


def regorus_version() -> str:
    """The regorus crate the embedded engine is built from (rust/Cargo.lock)."""
    lock = Path(__file__).resolve().parents[2] / "rust" / "Cargo.lock"
    text = lock.read_text(encoding="utf-8")
    match = re.search(r'name = "regorus"\nversion = "([^"]+)"', text)
    return match.group(1) if match else "unknown"


def _meta(settings: Settings, opa: str, groups: Sequence[str]) -> dict[str, object]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "opa": opa_version(opa),
        "regorus": regorus_version(),
        "sekuire": sekuire_version,
        "loadavg_at_start": os.getloadavg(),
        "groups": list(groups),
        "settings": {**settings.__dict__, "entries_per_policy": f"N spread over {LIST_COUNT} allow lists"},
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    opa = args.opa or find_opa()
    if opa is None:
        print("bench: the real OPA binary is missing: run `make opa` or pass --opa", file=sys.stderr)
        return 2
    groups = tuple(group for group in GROUPS if args.only is None or group in args.only)
    settings = Settings.make(quick=args.quick, actions=tuple(args.actions or ACTION_TYPES))
    report = Report(_meta(settings, opa, groups), HEADINGS)
    with tempfile.TemporaryDirectory(prefix="sekuire-bench-") as directory:
        bench = Bench(opa, Workload(Path(directory)), settings, report)
        try:
            run(bench, groups)
        finally:
            bench.close()
    report.meta["loadavg_at_end"] = os.getloadavg()
    table = report.table()
    report.write(args.out)
    args.out.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table)
    progress(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
