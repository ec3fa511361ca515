"""The real OPA the Makefile installs is the pinned one."""

from __future__ import annotations

import re
import subprocess

from .conftest import ROOT


def test_opa_is_the_pinned_version(opa_bin):
    pinned = re.search(r"^OPA_VERSION\s*:=\s*v(\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    out = subprocess.run([opa_bin, "version"], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^Version: (\S+)$", out, re.M).group(1) == pinned
