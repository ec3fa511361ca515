"""``sekuire policy show``: the seed's seven header lines, the summary, and the verification result.

Any well-formed policy.json is displayed, also one that does not verify (a
tampered file, an unknown key, no keyring): the last line then says
``Integrity: NOT verified (<reason>)`` and the exit code is 1. A file that is
not a well-formed policy.json (not JSON, wrong types) is an error as everywhere.
Every value is printed with control characters escaped, so a hostile file
cannot rewrite the terminal.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from ..errors import KeyringError, PolicyError, PolicyFormatError
from ..files import read_limited
from ..policy.canonical import strict_loads
from ..policy.document import MAX_POLICY_BYTES, Policy, parse_policy
from ..policy.keyring import resolve_keyring
from ..policy.model import Envelope, PolicyContent, parse_content, parse_envelope

__all__ = ["header_lines", "show", "summary_lines"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: Longer values are cut in the text output (``--format json`` carries them whole).
_MAX_SHOWN = 200


def _clean(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``), cut to a readable length."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def _cut(value: str | None) -> str:
    return f"{value[:8]}..." if value else "(none)"


def header_lines(envelope: Envelope) -> list[str]:
    """The seed's block: ids, version, status, hash and signature cut to 8 characters, the signing key."""
    return [
        f"Policy ID: {envelope.policy_id}",
        f"Workspace ID: {envelope.workspace_id}",
        f"Version: {envelope.version}",
        f"Status: {envelope.status}",
        f"Hash: {_cut(envelope.hash)}",
        f"Signature: {_cut(envelope.signature)}",
        f"Signing Key: {envelope.signing_key_id or '(none)'}",
    ]


def _join(values: tuple[str, ...] | None) -> str:
    return ", ".join(values) if values else "(none)"


def summary_lines(c: PolicyContent, unknown_sections: dict[str, Any] | None = None) -> list[str]:
    """What the policy allows, one domain a line."""
    lines = []
    models = c.agent.models if c.agent else None
    if models is None:
        lines.append("Models:      none allowed (no agent.models section)")
    else:
        named = _join(models.allowed_models) if models.allowed_models else "any of those providers"
        denied_models = f"; denied {_join(models.denied_models)}" if models.denied_models else ""
        lines.append(f"Models:      providers {_join(models.allowed_providers)}; models {named}{denied_models}")
    caps = c.agent.capabilities if c.agent else None
    tools = c.permissions.tools if c.permissions else None
    if caps or tools:
        allowed = (caps.allowed_tools if caps else ()) + (tools.allowed_tools if tools else ())
        denied = (caps.denied_tools if caps else ()) + (tools.blocked_tools if tools else ())
        lines.append(f"Tools:       allowed {_join(allowed)}; denied {_join(denied)}")
    else:
        lines.append("Tools:       none allowed (no tools section)")
    net = c.permissions.network if c.permissions else None
    if net is None:
        lines.append("Network:     none allowed (no network section)")
    elif not net.enabled:
        lines.append("Network:     disabled")
    else:
        tls = "TLS required" if net.require_tls else "TLS optional"
        lines.append(f"Network:     {tls}; allowed {_join(net.allowed_domains)}; blocked {_join(net.blocked_domains)}")
    fs = c.permissions.filesystem if c.permissions else None
    if fs is None:
        lines.append("Filesystem:  none allowed (no filesystem section)")
    elif not fs.enabled:
        lines.append("Filesystem:  disabled")
    else:
        ops = "any operation" if fs.allowed_operations is None else f"operations {_join(fs.allowed_operations)}"
        exts = f"; extensions {_join(fs.allowed_extensions)}" if fs.allowed_extensions else ""
        lines.append(f"Filesystem:  allowed {_join(fs.allowed_paths)}; blocked {_join(fs.blocked_paths)}{exts}; {ops}")
    apis = c.permissions.apis if c.permissions else None
    lines.append(
        f"APIs:        allowed {_join(apis.allowed_apis)}; blocked {_join(apis.blocked_apis)}"
        if apis
        else "APIs:        none allowed (no apis section)"
    )
    limits = []
    for name, section in (("requests", c.rate_limits.requests if c.rate_limits else None),
                          ("tokens", c.rate_limits.tokens if c.rate_limits else None)):
        parts = [] if section is None else [
            f"{section.max_per_minute}/min" if section.max_per_minute is not None else None,
            f"{section.max_per_hour}/h" if section.max_per_hour is not None else None,
        ]
        if any(parts):
            limits.append(f"{name} " + ", ".join(p for p in parts if p))
    # A missing section, kind or window sets no limit (DESIGN.md section 4).
    lines.append(f"Rate limits: {'; '.join(limits) if limits else 'none (unlimited)'}")
    comp = c.compliance
    if comp is not None:
        facts = list(comp.frameworks)
        if comp.require_audit_logging:
            facts.append("audit logging required")
        if comp.data_residency:
            facts.append(f"data residency {comp.data_residency}")
        lines.append(f"Compliance:  {', '.join(facts) if facts else '(none)'}")
    for name in sorted(unknown_sections or {}):
        lines.append(f"Unknown:     {name} (kept, not enforced)")
    return lines


def _read(source: str) -> Any:
    try:
        data = read_limited(Path(source), MAX_POLICY_BYTES)
    except OSError as exc:
        raise PolicyFormatError(exc.strerror or str(exc), source=source) from None
    try:
        return strict_loads(data)
    except PolicyFormatError as exc:
        raise exc.with_source(source) from None


def _verify(args: argparse.Namespace, document: Any) -> tuple[Policy | None, PolicyError | KeyringError | None]:
    try:
        keyring = resolve_keyring(args.keyring)
        return parse_policy(
            document, keyring, allow_unsigned=args.allow_unsigned, trust_embedded_key=args.trust_embedded_key
        ), None
    except (PolicyError, KeyringError) as exc:
        return None, exc


def _integrity(policy: Policy | None, error: PolicyError | KeyringError | None) -> tuple[str, dict[str, Any]]:
    if policy is None:
        assert error is not None
        reason = f"{error.pointer}: {error.message}" if error.pointer else error.message
        return f"Integrity: NOT verified ({reason})", {
            "verified": False, "signature_status": None, "error": error.code, "reason": reason,
        }
    if policy.signature_status == "unsigned":
        return "Integrity: hash verified, UNSIGNED (accepted with --allow-unsigned)", {
            "verified": True, "signature_status": "unsigned", "error": None, "reason": None,
        }
    return f"Integrity: verified (hash/signature, key {policy.signing_key_id})", {
        "verified": True, "signature_status": "verified", "error": None, "reason": None,
    }


def show(args: argparse.Namespace) -> int:
    """Print the policy at ``args.file``; 0 when it verifies, 1 when it is shown but does not verify."""
    source = args.file
    document = _read(source)
    try:
        envelope = parse_envelope(document)
        content, unknown, warnings = parse_content(envelope.content)
    except PolicyError as exc:
        raise exc.with_source(source) from None
    policy, error = _verify(args, document)
    line, integrity = _integrity(policy, error)
    for warning in warnings:
        print(_clean(f"warning: {warning}"), file=sys.stderr)
    if args.format == "json":
        fields = ("policy_id", "workspace_id", "version", "status", "hash", "signature", "signing_key_id",
                  "activated_at", "updated_at")
        out = {name: getattr(envelope, name) for name in fields}
        out["content"] = envelope.content
        out["integrity"] = integrity
        print(json.dumps(out, indent=2, ensure_ascii=True))
    else:
        lines = [*header_lines(envelope), *summary_lines(content, unknown), line]
        print("\n".join(_clean(text) for text in lines))
    return 0 if policy is not None else 1
