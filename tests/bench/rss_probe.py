"""Peak RSS of an agent process holding an enforcer: ``python -m tests.bench.rss_probe POLICY KEYRING ACTIONS``.

Run in a fresh interpreter so the harness's own memory does not count. It
imports what an agent imports, loads and verifies the policy, builds the
default (embedded) enforcer, decides each action in the ACTIONS JSON list once,
and prints ``{"imports_kib", "peak_kib"}`` (VmHWM after the imports, and at the end).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(argv: list[str]) -> int:
    policy_path, keyring_path, actions_json = argv
    from sekuire.compiler import load_policy
    from sekuire.runtime import PolicyEnforcer

    imports = _vm_hwm_kib()
    policy = load_policy(policy_path, keyring=keyring_path)
    with PolicyEnforcer(policy, agent_id="bench-agent") as enforcer:
        decisions = [enforcer.check(action) for action in json.loads(actions_json)]
        if not all(decision.allow for decision in decisions):
            raise SystemExit(f"a probe action was denied: {decisions}")
        print(json.dumps({"imports_kib": imports, "peak_kib": _vm_hwm_kib()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
