"""``sekuire mcp-proxy``: run an MCP server behind the policy's tool gate, speaking MCP on stdio.

The runtime and the MCP SDK are imported inside the handler only (the SDK is
the optional extra ``sekuire-opa[mcp]``).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..bundle.keys import SIGNING_ALGORITHMS, load_verification_key
from ..errors import BundleError, CompileError, SekuireError
from ..files import read_limited
from ..policy.document import Policy
from .options import add_verify_options, policy_from

if TYPE_CHECKING:
    from ...runtime.engine import EmbeddedEngine

__all__ = ["register"]

_MAX_BUNDLE_BYTES = 64 << 20


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    proxy = sub.add_parser(
        "mcp-proxy",
        help="run an MCP server behind the policy: hide denied tools, refuse their calls",
        description="Start the MCP server given after `--` and speak MCP on stdin/stdout in its place: "
        "tools/list shows only the tools the policy allows, tools/call of a denied tool is refused "
        "and never reaches the server; everything else is relayed unchanged.",
    )
    source = proxy.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", metavar="FILE", help="a verified policy.json (see --keyring)")
    source.add_argument("--bundle", metavar="FILE", help="a signed bundle built by `sekuire policy build`")
    proxy.add_argument("--verification-key", metavar="KEY", help="public key (or HS* secret) that verifies --bundle")
    proxy.add_argument("--signing-alg", choices=SIGNING_ALGORITHMS, help="expected algorithm of the bundle signature")
    proxy.add_argument("--agent", default="default", metavar="ID", help="context.agent of the decisions (default: default)")
    proxy.add_argument("--decision-log", metavar="FILE", help="append each decision to FILE as a JSON line (OPA's format)")
    proxy.add_argument(
        "--deny-as",
        choices=("error", "result"),
        default="error",
        help="answer a denied tools/call with a JSON-RPC error (default) or a tool result with isError",
    )
    add_verify_options(proxy)
    proxy.add_argument("server", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG ...]", help="the MCP server to start")
    proxy.set_defaults(handler=_mcp_proxy)


def _server_command(args: argparse.Namespace) -> list[str]:
    command = list(args.server)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise SekuireError("mcp-proxy: give the MCP server's command after `--`")
    return command


def _mcp_proxy(args: argparse.Namespace) -> int:
    command = _server_command(args)
    try:
        import anyio

        from ...runtime.mcp_proxy import serve_stdio
    except ImportError as exc:
        raise SekuireError(f"the MCP SDK is not installed ({exc.name}): pip install 'sekuire-opa[mcp]'") from None
    from ...runtime.decision_log import FileSink
    from ...runtime.enforcer import PolicyEnforcer
    from ...runtime.mcp_gate import ToolGate

    if args.file:
        if args.verification_key:
            raise SekuireError("--verification-key verifies --bundle; a policy.json is verified with --keyring", source="mcp-proxy")
        policy = policy_from(args, args.file)
        engine = None
        for warning in policy.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if args.trust_embedded_key:
            print("warning: --trust-embedded-key: a key carried inside the policy may have verified it (unsafe)", file=sys.stderr)
        if policy.signature_status == "unsigned":
            print(f"warning: policy {policy.policy_id} is UNSIGNED; accepted only because of --allow-unsigned", file=sys.stderr)
    else:
        policy, engine = _bundle_policy(args)
    sink = None
    if args.decision_log:  # opened once the policy is good: a refused start leaves no file behind
        try:
            open(args.decision_log, "a", encoding="utf-8").close()  # fail now, not at the first decision
        except OSError as exc:
            if engine is not None:
                engine.close()
            raise SekuireError(exc.strerror or str(exc), source=args.decision_log) from None
        sink = FileSink(args.decision_log)

    def denied(rule: str, reason: str) -> None:
        print(f"sekuire mcp-proxy: denied: {rule}: {reason}", file=sys.stderr, flush=True)

    def started() -> None:
        print(
            f"sekuire mcp-proxy: policy {policy.policy_id} (v{policy.version}) of workspace {policy.workspace_id} "
            f"in front of {' '.join(command)}",
            file=sys.stderr,
            flush=True,
        )

    enforcer = PolicyEnforcer(policy, on_violation=denied, engine=engine, agent_id=args.agent, decision_log=sink)
    gate = ToolGate(enforcer)
    try:
        side = anyio.run(lambda: serve_stdio(gate, command[0], command[1:], deny_as=args.deny_as, on_started=started))
    finally:
        enforcer.close()
        if engine is not None:
            engine.close()
        if sink is not None:
            sink.close()
    if side == "server":
        raise SekuireError(f"the MCP server {command[0]!r} exited")
    return 0


def _bundle_policy(args: argparse.Namespace) -> tuple[Policy, EmbeddedEngine]:
    """The engine of a verified bundle, and the Policy the enforcer takes, read from the bundle's signed manifest.

    The bytes are read once: what is verified is what is read. The Policy carries the
    manifest's ids, version and hash, and the bundle's compliance section (so
    ``require_audit_logging`` still turns the decision log on); it is marked
    ``verified`` because the bundle signature over every file, the manifest included, was.
    """
    from ...runtime.engine import EmbeddedEngine
    from ..bundle.tarball import read_bundle
    from ..policy.model import parse_content

    source = args.bundle
    if not args.verification_key:
        raise BundleError("--bundle needs --verification-key (the proxy never runs an unsigned bundle)", source=source)
    try:
        data = read_limited(source, _MAX_BUNDLE_BYTES)
    except OSError as exc:
        raise BundleError(exc.strerror or str(exc), source=source) from None
    try:
        key = load_verification_key(args.verification_key, alg=args.signing_alg)
        engine = EmbeddedEngine.from_bundle(data, verification_key=key, alg=args.signing_alg)
        bundle = read_bundle(data, source=source)
    except SekuireError as exc:
        if exc.source in (None, "<bytes>"):
            exc.source = source
        raise
    metadata = (bundle.manifest or {}).get("metadata")
    fields = {}
    for field in ("policy_id", "workspace_id", "version", "hash"):
        value = metadata.get(field) if isinstance(metadata, dict) else None
        if not isinstance(value, str) or not value:
            engine.close()
            raise CompileError(
                f"not a sekuire bundle: no {field} in its manifest metadata", source=source, pointer=f"/.manifest/metadata/{field}"
            )
        fields[field] = value
    workspace = fields["workspace_id"]
    lowered = _policy_section(bundle.data, workspace, "compliance")
    content, _, _ = parse_content({"compliance": lowered} if isinstance(lowered, dict) else {})
    policy = Policy(
        policy_id=fields["policy_id"],
        workspace_id=workspace,
        version=fields["version"],
        status="active",
        hash=fields["hash"],
        signing_key_id=None,
        signature_status="verified",
        content=content,
        raw_content={},
    )
    return policy, engine


def _policy_section(data: object, workspace: str, name: str) -> object:
    """``data.sekuire.workspaces.<ws>.policy.<name>`` of a bundle's data, or None."""
    for key in ("sekuire", "workspaces", workspace, "policy", name):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data
