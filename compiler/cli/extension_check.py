"""Build-time checks of extension modules: regorus compiles them with the library, and the real OPA when present.

Both checks name the extension file and line of the first problem in a
one-line :class:`CompileError`. The regorus compile always runs (it is the
embedded engine); ``opa check --strict`` and ``opa fmt --list`` run when an OPA
binary is found (``$SEKUIRE_OPA``, else ``opa`` on the PATH), and are skipped,
with a note on stderr, when none is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import CompileError
from ..rego.compile import CompiledPolicy
from ..rego.extensions import Extension

__all__ = ["check_extensions"]

_LOCATION = re.compile(r"-->\s*(?P<file>[^\n]+?):(?P<line>\d+):\d+")
_ERROR = re.compile(r"^error:\s*(?P<message>.+)$", re.MULTILINE)


def check_extensions(compiled: CompiledPolicy, extensions: list[Extension]) -> None:
    """Refuse extensions that do not compile beside the library (in regorus, and in OPA when it is installed)."""
    bundled = [e for e in extensions if not e.test]
    if not bundled:
        return
    sources = {f"{compiled.root}/ext/{e.file_name}": e.source_path for e in bundled}
    _check_regorus(compiled, sources)
    _check_opa(compiled, sources)


def _check_regorus(compiled: CompiledPolicy, sources: dict[str, str]) -> None:
    from ...runtime._regorus import Policy, RegorusError
    from ...runtime.engine import rule_ref

    modules = [(sources.get(path, path), text) for path, text in compiled.modules.items()]
    try:
        Policy(modules, json.dumps(compiled.data)).compile(rule_ref(compiled.decision_path))
    except RegorusError as exc:
        text = str(exc)
        where, message = _LOCATION.search(text), _ERROR.search(text)
        detail = message.group("message").strip() if message else (text.strip().splitlines() or ["does not compile"])[-1]
        if where is None:
            raise CompileError(f"extensions do not compile: {detail}") from None
        raise CompileError(f"line {where.group('line')}: {detail}", source=where.group("file")) from None


def _opa() -> str | None:
    candidate = os.environ.get("SEKUIRE_OPA") or shutil.which("opa")
    return candidate if candidate and os.access(candidate, os.X_OK) else None


def _check_opa(compiled: CompiledPolicy, sources: dict[str, str]) -> None:
    opa = _opa()
    if opa is None:
        print("note: no opa binary found ($SEKUIRE_OPA or PATH): extensions checked by regorus only", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory(prefix="sekuire-ext-") as scratch:
        for path, text in compiled.modules.items():
            target = Path(scratch) / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        checked = subprocess.run([opa, "check", "--strict", scratch], capture_output=True, text=True, timeout=120)
        if checked.returncode != 0:
            _raise_opa(checked.stdout + checked.stderr, scratch, sources)
        formatted = subprocess.run([opa, "fmt", "--list", *[str(Path(scratch) / p) for p in sources]],
                                   capture_output=True, text=True, timeout=120)
        unformatted = [line.strip() for line in formatted.stdout.splitlines() if line.strip()]
        if unformatted:
            path = os.path.relpath(unformatted[0].split(":")[0], scratch)
            raise CompileError("not formatted as `opa fmt` writes it", source=sources.get(path, path))


def _raise_opa(output: str, scratch: str, sources: dict[str, str]) -> None:
    for line in output.splitlines():
        match = re.search(re.escape(scratch) + r"/(?P<path>[^:]+):(?P<line>\d+): (?P<message>.+)", line)
        if match:
            path = match.group("path")
            raise CompileError(f"line {match.group('line')}: {match.group('message')}", source=sources.get(path, path))
    raise CompileError(f"opa check --strict failed: {output.strip().splitlines()[0] if output.strip() else ''}")
