"""The table of subcommands: name, one-line help and the module that defines it, in ``sekuire --help`` order.

The entry point imports only the module of the command being run, so
``sekuire --help`` and ``sekuire --version`` never load pydantic, Jinja2,
cryptography or the engine. A module's ``register(subparsers)`` adds every
command the table gives it.
"""

from __future__ import annotations

__all__ = ["COMMANDS", "EXAMPLES"]

#: (command, help, module under sekuire.compiler.cli)
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("policy", "pull, verify, inspect, sign, compile and evaluate policy.json", "policy_cmd"),
    ("bundle", "verify and inspect OPA bundles", "bundle_cmd"),
    ("push", "validate an agent manifest against the workspace policy and push it", "push_cmd"),
    ("keys", "generate and manage signing and trusted keys", "keys_cmd"),
    ("opa-config", "write an OPA config that pulls and verifies workspace bundles", "ops_cmd"),
    ("publish", "write a static site serving policies, keys and bundles", "ops_cmd"),
    ("opa", "push a policy into an OPA and read its health, bundles and revisions", "opa_cmd"),
    ("mcp-proxy", "run an MCP server behind the policy: hide denied tools, refuse their calls", "mcp_cmd"),
)

#: One example per command (``sekuire <path> --help`` ends with it); a test checks that every command has one.
EXAMPLES: dict[str, str] = {
    "": "sekuire policy validate --file policy.json --keyring keyring.json",
    "policy": "sekuire policy show --file policy.json",
    "policy pull": "sekuire policy pull --workspace ws_abc123 --backend https://policies.example.com "
    "--trust-on-first-use",
    "policy validate": "sekuire policy validate --file policy.json --keyring keyring.json",
    "policy show": "sekuire policy show --file policy.json --format json",
    "policy sign": "sekuire policy sign --file policy.json --key signer.key --key-id key_test_1",
    "policy build": "sekuire policy build --file policy.json --out bundle.tar.gz --signing-key bundle-key.pem",
    "policy rego": "sekuire policy rego --out build/rego --tests && opa test build/rego",
    "policy test": "sekuire policy test cases.yml --file policy.json --extension rules/ --engine both --format junit",
    "policy eval": "sekuire policy eval --file policy.json --explain --format text "
    "--action '{\"type\": \"tool\", \"name\": \"web_search\"}'",
    "bundle": "sekuire bundle verify bundle.tar.gz --verification-key bundle-key.pub.pem",
    "bundle verify": "sekuire bundle verify bundle.tar.gz --verification-key bundle-key.pub.pem",
    "bundle inspect": "sekuire bundle inspect bundle.tar.gz --format json",
    "push": "sekuire push --workspace ws_abc123 --manifest sekuire.yml",
    "keys": "sekuire keys generate --key-id default --algorithm RS256 --out bundle-key",
    "keys generate": "sekuire keys generate --key-id default --algorithm RS256 --out bundle-key",
    "keys trust": "sekuire keys trust --key-id key_prod_2 --public-key 9f1c...e07a --fingerprint SHA256:...",
    "keys list": "sekuire keys list --format json",
    "keys remove": "sekuire keys remove --key-id key_prod_1",
    "opa-config": "sekuire opa-config --service-url https://bundles.example.com --workspace ws_abc123 "
    "--verification-key bundle-key.pub.pem --out opa.yaml",
    "publish": "sekuire publish --site site/ --file policy.json --signing-key bundle-key.pem",
    "opa": "sekuire opa status --url http://127.0.0.1:8181",
    "opa push": "sekuire opa push --url http://127.0.0.1:8181 --file policy.json --keyring keyring.json",
    "opa status": "sekuire opa status --url http://127.0.0.1:8181 --format json",
    "mcp-proxy": "sekuire mcp-proxy --file policy.json -- npx -y @modelcontextprotocol/server-filesystem /srv",
}
