"""The README's first command: ``make demo`` runs policies/examples/demo.py, which must work as shipped."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT


def test_demo_runs_and_enforces():
    result = subprocess.run([sys.executable, str(ROOT / "policies" / "examples" / "demo.py")], capture_output=True,
                            text=True, timeout=300, cwd="/")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "1. Verified policy.json" in out
    assert "ALLOW  enforce_api('github')" in out
    assert "DENY   enforce_model('gemini-1.5-pro')" in out and "model.not_allowed" in out
    assert "Traceback" not in result.stderr
