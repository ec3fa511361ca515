"""``sekuire push``: validate sekuire.yml against the workspace's active policy, then register the agent.

With ``--workspace`` the manifest is checked by the policy's own ``manifest``
entry point (embedded Rego over the fetched, verified policy); a violation
blocks the push with exit code 3 unless ``--force``. The backend receives the
manifest input document plus a ``validation`` record of the policy it was
checked against and whether the push was forced past violations. Without
``--workspace`` (as the seed allows) the manifest is pushed to ``/v1/agents``
unvalidated, and the command says so on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..policy.backend import push_agent_manifest
from .exitcodes import EXIT_OK, EXIT_VIOLATION
from .options import add_backend_option, backend_from

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    push = sub.add_parser("push", help="validate an agent manifest against the workspace policy and push it")
    push.add_argument("--workspace", metavar="ID", help="validate against this workspace's active policy and push to it")
    push.add_argument("--manifest", default="sekuire.yml", metavar="FILE", help="the agent manifest (default: sekuire.yml)")
    add_backend_option(push)
    push.add_argument("--keyring", metavar="FILE", help="trusted keys (default: $SEKUIRE_KEYRING, else the user keyring)")
    push.add_argument("--force", action="store_true", help="push even when the manifest violates the policy")
    push.set_defaults(handler=_push)


def _push(args: argparse.Namespace) -> int:
    # The runtime depends on the compiler, never the reverse: import it only when the command runs.
    from ...runtime.client import PolicyClient
    from ...runtime.decision import Decision
    from ...runtime.engine import EmbeddedEngine
    from ...runtime.errors import EngineResponseError
    from ...runtime.manifest import load_manifest, manifest_input
    from ..rego.compile import compile_policy

    backend = backend_from(args)
    manifest = load_manifest(args.manifest)
    if args.workspace is None:
        return _push_unvalidated(backend, args.manifest, manifest_input(manifest), manifest.name)
    with PolicyClient(backend, keyring=args.keyring) as client:
        policy = client.fetch_active_policy(args.workspace)
    compiled = compile_policy(policy)
    document = manifest_input(manifest)
    with EmbeddedEngine.from_compiled(compiled) as engine:
        result = engine.evaluate(compiled.manifest_path, document)
    decision = Decision.from_result(result)
    warnings = result.get("warnings", [])
    if not isinstance(warnings, list) or not all(
        isinstance(w, dict) and isinstance(w.get("rule"), str) and isinstance(w.get("message"), str) for w in warnings
    ):
        raise EngineResponseError("the manifest decision has malformed 'warnings'", source=compiled.manifest_path)

    label = f"policy {policy.policy_id} (v{policy.version})"
    for warning in warnings:
        print(f"warning: {warning['rule']}: {warning['message']}", file=sys.stderr)
    for violation in decision.violations:
        print(f"violation: {violation.rule}: {violation.message}", file=sys.stderr)
    if decision.violations:
        if not args.force:
            print(f"error: push blocked: {args.manifest} violates {label} of workspace {args.workspace} "
                  f"({len(decision.violations)} violation(s)); fix it or use --force", file=sys.stderr)
            return EXIT_VIOLATION
        print(f"warning: pushing despite {len(decision.violations)} violation(s) (--force)", file=sys.stderr)

    body: dict[str, Any] = {
        **document,
        "validation": {
            "policy": {"policy_id": policy.policy_id, "version": policy.version, "hash": policy.hash},
            "violations": [v.rule for v in decision.violations],
            "forced": bool(decision.violations),
        },
    }
    answer = push_agent_manifest(backend, args.workspace, body)
    agent_id = answer.get("agent_id") or answer.get("id")
    registered = f" as {agent_id}" if isinstance(agent_id, str) and agent_id else ""
    print(f"Pushed agent {manifest.name} to workspace {args.workspace}{registered} (validated against {label})")
    return EXIT_OK


def _push_unvalidated(backend: str, path: str, document: dict[str, Any], name: str) -> int:
    print(f"warning: no --workspace: pushing {path} WITHOUT policy validation "
          "(pass --workspace ID to validate it against the workspace's active policy)", file=sys.stderr)
    answer = push_agent_manifest(backend, None, {**document, "validation": None})
    agent_id = answer.get("agent_id") or answer.get("id")
    registered = f" as {agent_id}" if isinstance(agent_id, str) and agent_id else ""
    print(f"Pushed agent {name}{registered} (not validated against any policy)")
    return EXIT_OK
