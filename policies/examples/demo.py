"""`make demo`: the main job on the embedded default, end to end, on the example policy.

1. verify the signed policy.json against a keyring (the examples' test key);
2. compile it into an OPA bundle, sign it (a throwaway RS256 key) and verify the bundle;
3. load the signed bundle into the embedded engine and enforce agent actions,
   including bypass attempts, rate limits and the decision cache.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sekuire.compiler import (
    BundleSigner,
    build_bundle,
    compile_policy,
    load_bundle,
    load_policy,
    verify_bundle,
)
from sekuire.compiler.cli.policy_show import summary_lines
from sekuire.runtime import EmbeddedEngine, PolicyEnforcer, PolicyViolationError

HERE = Path(__file__).resolve().parent
ACTIONS = [
    ("enforce_tool", ("web_search",)),
    ("enforce_tool", ("file_read",)),
    ("enforce_tool", ("file_delete",)),
    ("enforce_tool", ("shell_exec",)),
    ("enforce_network", ("api.openai.com", "https")),
    ("enforce_network", ("API.OpenAI.com.:443", "https")),
    ("enforce_network", ("docs.anthropic.com", "https")),
    ("enforce_network", ("evil.anthropic.com", "https")),
    ("enforce_network", ("anthropic.com.evil.net", "https")),
    ("enforce_network", ("api.openai.com", "http")),
    ("enforce_filesystem", ("/workspace/notes.md", "read")),
    ("enforce_filesystem", ("/workspace/../etc/passwd", "read")),
    ("enforce_filesystem", ("/workspace/secrets/key.txt", "read")),
    ("enforce_filesystem", ("/workspace/run.sh", "read")),
    ("enforce_api", ("github",)),
    ("enforce_model", ("gpt-4o",)),
    ("enforce_model", ("claude-3-opus",)),
    ("enforce_model", ("gemini-1.5-pro",)),
]


def main() -> int:
    policy = load_policy(HERE / "coding-assistant.json", keyring=HERE / "keyring.json")
    print("1. Verified policy.json")
    print("   " + "\n   ".join(summary_lines(policy.content, policy.unknown_sections)))

    with tempfile.TemporaryDirectory() as tmp:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        signer = BundleSigner(
            private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        started = time.perf_counter()
        compiled = compile_policy(policy)
        bundle_path = Path(tmp) / "bundle.tar.gz"
        bundle_path.write_bytes(build_bundle(compiled, signer=signer))
        elapsed = (time.perf_counter() - started) * 1000
        verified = verify_bundle(load_bundle(bundle_path), key=public_pem)
        print(f"\n2. Compiled and signed an OPA bundle in {elapsed:.1f} ms: revision {verified.revision}")
        print(f"   {len(verified.files)} files, every one listed in .signatures.json ({verified.alg}, kid {verified.key_id})")
        print(f"   roots {compiled.manifest['roots']}; query data.{compiled.package}.decision")

        engine = EmbeddedEngine.from_bundle(bundle_path, verification_key=public_pem)

    seen: list[str] = []
    enforcer = PolicyEnforcer(policy, engine=engine, on_violation=lambda rule, reason: seen.append(rule))
    print("\n3. Enforcing in-process (embedded Rego engine)")
    for method, args in ACTIONS:
        call = f"{method}({', '.join(repr(a) for a in args)})"
        try:
            getattr(enforcer, method)(*args)
            print(f"   ALLOW  {call}")
        except PolicyViolationError as err:
            print(f"   DENY   {call:58} {err.rule}: {err.reason}")

    allowed, last = 0, "none"
    for _ in range(70):
        try:
            enforcer.enforce_rate_limit("request")
            allowed += 1
        except PolicyViolationError as err:
            last = err.rule
    print(f"   70 requests in one minute: {allowed} allowed, the rest denied ({last})")

    n = 2000
    started = time.perf_counter()
    for _ in range(n):
        enforcer.check({"type": "tool", "name": "web_search"})
    warm = (time.perf_counter() - started) / n * 1e6
    print(f"   decision cache: {warm:.1f} us per repeated decision (make bench measures against OPA)")
    print(f"   on_violation saw {len(seen)} violations")
    enforcer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
