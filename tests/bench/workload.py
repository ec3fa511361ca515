"""The generated inputs every row shares: signed policies of N list entries, the probe actions, the bundles.

A policy of N entries spreads them evenly over the five allow lists that grow
with a workspace (tools, domains, paths, APIs, models: N/5 each). Each list is
N/5 - 1 generated fillers followed by the one entry the probe actions hit, so a
lookup that scanned the list would pay for all of it, while the probe inputs
stay the same for every N. Rate limits are set far above what a run can use, so
``enforce_rate_limit`` keeps allowing. There is no ``compliance`` section, so
no decision log is written (it is a sink of the user's choosing, not the engine).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sekuire.compiler import Keyring, Policy, parse_policy, sign_document
from sekuire.compiler.bundle.signing import BundleSigner
from sekuire.compiler.bundle.tarball import DATA_FILE, MANIFEST_FILE, build_bundle
from sekuire.compiler.policy.canonical import canonical_json
from sekuire.compiler.rego.compile import CompiledPolicy, compile_policy
from sekuire.runtime import PolicyEnforcer
from sekuire.runtime.engine import decision_path
from sekuire.runtime.normalize import normalize_action

from ..conftest import ENVELOPE_VECTORS

__all__ = [
    "ACTIONS",
    "ACTION_TYPES",
    "AGENT_ID",
    "CACHEABLE_TYPES",
    "CIDR_PROBES",
    "GLOB_PROBES",
    "LIST_COUNT",
    "SIGNING_ALG",
    "WORKSPACE_ID",
    "Workload",
    "bench_content",
    "cidr_content",
    "enforce_call",
    "engine_input",
    "glob_content",
]

WORKSPACE_ID = "ws_bench"
AGENT_ID = "bench-agent"
#: The allow lists that share a policy's N entries.
LIST_COUNT = 5
#: Bundles are signed as a fleet would sign them (``opa build --signing-alg`` default).
SIGNING_ALG = "RS256"
_UNLIMITED = 10**12

#: One allowed action of each type of the decision contract; the probe entries are the last of their lists.
ACTIONS: dict[str, dict[str, Any]] = {
    "tool": {"type": "tool", "name": "web_search"},
    "network": {"type": "network", "host": "api.openai.com", "protocol": "https"},
    "filesystem": {"type": "filesystem", "path": "/workspace/src/main.py", "operation": "read"},
    "api": {"type": "api", "name": "github"},
    "model": {"type": "model", "name": "gpt-4o"},
    "rate_limit": {"type": "rate_limit", "kind": "request", "amount": 1},
}
ACTION_TYPES = tuple(ACTIONS)
#: Rate-limit decisions depend on counters and are never cached.
CACHEABLE_TYPES = tuple(kind for kind in ACTION_TYPES if kind != "rate_limit")


def _entries(size: int, filler: Callable[[int], str], probe: str) -> list[str]:
    per_list = max(1, size // LIST_COUNT)
    return [filler(index) for index in range(per_list - 1)] + [probe]


def bench_content(size: int) -> dict[str, Any]:
    """Policy content with ``size`` allow-list entries in all (see the module docstring)."""
    return {
        "agent": {
            "models": {
                "allowed_providers": ["openai", "anthropic"],
                "allowed_models": _entries(size, lambda i: f"gpt-bench-{i:06d}", "gpt-4o"),
                "denied_models": ["gpt-3.5-turbo"],
            },
            "capabilities": {
                "allowed_tools": _entries(size, lambda i: f"tool_{i:06d}", "web_search"),
                "denied_tools": ["file_delete"],
            },
        },
        "permissions": {
            "network": {
                "enabled": True,
                "require_tls": True,
                "allowed_domains": _entries(size, lambda i: f"h{i:06d}.bench.example.com", "api.openai.com"),
                "blocked_domains": ["evil.example.com"],
            },
            "filesystem": {
                "enabled": True,
                "allowed_paths": _entries(size, lambda i: f"/data/d{i:06d}/*", "/workspace/*"),
                "blocked_paths": ["/workspace/secrets/*"],
                "allowed_extensions": [".txt", ".md", ".json", ".py"],
            },
            "apis": {"allowed_apis": _entries(size, lambda i: f"api_{i:06d}", "github"), "blocked_apis": []},
        },
        "rate_limits": {
            "requests": {"max_per_minute": _UNLIMITED, "max_per_hour": _UNLIMITED},
            "tokens": {"max_per_minute": _UNLIMITED, "max_per_hour": _UNLIMITED},
        },
    }


#: Tool names the glob policies allow (through their last glob, ``web_*``) and deny (no glob matches).
GLOB_PROBES = {"allowed": "web_search", "denied": "shell_exec"}
#: Hosts the CIDR policies allow (through their last CIDR, ``192.168.7.0/24``) and deny (no CIDR matches).
CIDR_PROBES = {"allowed": "192.168.7.7", "denied": "172.16.0.1"}


def glob_content(count: int) -> dict[str, Any]:
    """The 10-entry content with ``count`` tool globs (``tool_000001_*``, ..., then ``web_*``) as its allowed tools."""
    content = bench_content(10)
    content["agent"]["capabilities"]["allowed_tools"] = [f"tool_{i:06d}_*" for i in range(count - 1)] + ["web_*"]
    return content


def cidr_content(count: int) -> dict[str, Any]:
    """The 10-entry content with ``count`` IPv4 CIDRs as its allowed domains: /24, /28 and /32 networks in turn
    under 10.0.0.0/8, then ``192.168.7.0/24``."""
    content = bench_content(10)
    shapes = ("10.{a}.{b}.0/24", "10.{a}.{b}.16/28", "10.{a}.{b}.1/32")
    fillers = [shapes[i % 3].format(a=i // 256, b=i % 256) for i in range(count - 1)]
    content["permissions"]["network"]["allowed_domains"] = [*fillers, "192.168.7.0/24"]
    return content


def enforce_call(enforcer: PolicyEnforcer, kind: str) -> Callable[[], object]:
    """The enforcer call an agent makes for the probe action of ``kind`` (a deny would raise)."""
    action = ACTIONS[kind]
    if kind == "network":
        return functools.partial(enforcer.enforce_network, action["host"], action["protocol"])
    if kind == "filesystem":
        return functools.partial(enforcer.enforce_filesystem, action["path"], action["operation"])
    if kind == "rate_limit":
        return functools.partial(enforcer.enforce_rate_limit, action["kind"], action["amount"])
    return functools.partial(getattr(enforcer, f"enforce_{kind}"), action["name"])


def engine_input(kind: str) -> dict[str, Any]:
    """The OPA input the enforcer sends for the probe action of ``kind`` (with zero usage for rate limits)."""
    action = normalize_action(ACTIONS[kind])
    if kind == "rate_limit":
        action["usage"] = {"minute": 0, "hour": 0}
    return {"action": action, "context": {"agent": AGENT_ID, "workspace": WORKSPACE_ID}}


@dataclass(frozen=True)
class _Keys:
    private_pem: Path
    public_pem: Path


class Workload:
    """Signed policies, compiled policies and bundles of each size, made once under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        vectors = json.loads(ENVELOPE_VECTORS.read_text(encoding="utf-8"))["key"]
        self._seed = bytes.fromhex(vectors["private_seed_hex"])
        self.key_id: str = vectors["key_id"]
        self.keyring = Keyring(keys={self.key_id: bytes.fromhex(vectors["public_key_hex"])}, path=directory / "keyring.json")
        self.keyring.save()
        self.decision_path = decision_path(WORKSPACE_ID)

    @functools.cached_property
    def keys(self) -> _Keys:
        """An RSA key pair that signs every bundle (OPA verifies RS256, not the policies' Ed25519)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = self.directory / "bundle-signing.pem"
        public = self.directory / "bundle-verification.pem"
        private.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        public.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        return _Keys(private, public)

    @functools.cache
    def document(self, size: int) -> dict[str, Any]:
        return self._signed(f"bench-{size}", bench_content(size))

    def _signed(self, policy_id: str, content: dict[str, Any]) -> dict[str, Any]:
        envelope = {"policy_id": policy_id, "workspace_id": WORKSPACE_ID, "version": "1", "status": "active",
                    "content": content}
        return sign_document(envelope, self._seed, self.key_id)

    @functools.cache
    def glob_policy(self, count: int) -> Policy:
        """A verified policy whose allowed tools are ``count`` globs (:func:`glob_content`)."""
        return parse_policy(self._signed(f"bench-globs-{count}", glob_content(count)), self.keyring)

    @functools.cache
    def cidr_policy(self, count: int) -> Policy:
        """A verified policy whose allowed domains are ``count`` CIDRs (:func:`cidr_content`)."""
        return parse_policy(self._signed(f"bench-cidrs-{count}", cidr_content(count)), self.keyring)

    @functools.cache
    def policy_file(self, size: int) -> Path:
        path = self.directory / f"policy-{size}.json"
        path.write_bytes(canonical_json(self.document(size)))
        return path

    @functools.cache
    def policy(self, size: int) -> Policy:
        return parse_policy(self.document(size), self.keyring)

    @functools.cache
    def compiled(self, size: int) -> CompiledPolicy:
        return compile_policy(self.policy(size))

    @functools.cache
    def bundle(self, size: int) -> Path:
        """The signed bundle, as ``sekuire policy build --signing-key`` writes it (the writer is deterministic)."""
        signer = BundleSigner.from_file(self.keys.private_pem, alg=SIGNING_ALG)
        path = self.directory / f"bundle-{size}.tar.gz"
        path.write_bytes(build_bundle(self.compiled(size), signer=signer))
        return path

    @functools.cache
    def bundle_dir(self, size: int) -> Path:
        """The same files unpacked (``.manifest``, ``data.json``, modules): what ``opa build -b`` takes."""
        compiled = self.compiled(size)
        root = self.directory / f"bundle-{size}"
        for name, source in compiled.modules.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source, encoding="utf-8")
        (root / DATA_FILE).write_bytes(canonical_json(compiled.data))
        (root / MANIFEST_FILE).write_bytes(canonical_json(compiled.manifest))
        return root

    @functools.cache
    def input_file(self, kind: str) -> Path:
        path = self.directory / f"input-{kind}.json"
        path.write_text(json.dumps(engine_input(kind)), encoding="utf-8")
        return path

    def environment(self) -> dict[str, str]:
        """The environment of child processes: no developer override, no user keyring."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("SEKUIRE_")}
        env["SEKUIRE_KEYRING"] = str(self.keyring.path)
        return env
