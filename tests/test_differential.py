"""Differential test: reference implementation == real OPA == regorus, over a generated corpus.

Every example policy is compiled; a deterministic corpus of actions (all types,
hostile hosts and paths, unicode, wildcards in the input, wrong types) and of
agent manifests is decided by

- tests/reference.py over the raw policy content (allow + sorted violations),
- one real ``opa eval`` process over the rendered modules and data (all cases at once),
- the embedded engine regorus (the runtime's own binding ``sekuire.runtime._regorus``),
  both its interpreter and its compiled VM (what the runtime's EmbeddedEngine
  runs), the VM fed both ways: Python objects and JSON text,

and the three must agree: the reference with OPA on allow and the violation
list, OPA with regorus on the whole decision document.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sekuire.compiler import Keyring, load_policy
from sekuire.compiler.rego.compile import CompiledPolicy, compile_policy
from sekuire.runtime import _regorus

from . import reference
from .security_support import unsigned_policy

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = [ROOT / "policies" / "examples" / name
            for name in ("coding-assistant.json", "locked-down.json", "research-agent.json")]


# -- corpus ------------------------------------------------------------------------------------------------

HOSTS = [
    "api.openai.com", "API.OPENAI.COM", "api.openai.com.", "api.openai.com..", "api.openai.com:443",
    "api.openai.com:0", "api.openai.com:65535", "api.openai.com:65536", "api.openai.com:", "api.openai.com:08",
    "api.openai.com.evil.net", "evil-api.openai.com", "xapi.openai.com", "openai.com", "api.openai.co",
    "anthropic.com", "x.anthropic.com", "a.b.anthropic.com", "evil.anthropic.com", "EVIL.Anthropic.COM.",
    "x.evil.anthropic.com", "anthropic.com.evil.net", "evil-anthropic.com", "api.anthropic.com",
    "arxiv.org", "export.arxiv.org", "www.arxiv.org", "en.wikipedia.org", "a.upload.wikipedia.org",
    "upload.wikipedia.org", "api.mistral.ai", "generativelanguage.googleapis.com",
    "a@b", "user@api.openai.com", "https://api.openai.com", "api.openai.com/v1", "api.openai.com\\x",
    "api.openai.com#frag", "api.openai.com?q", " api.openai.com", "api.openai.com\t", "api.openai.com\u0000",
    "api.openai.com\n", "", ".", "..", ".api.openai.com", "*", "*.anthropic.com", "*.openai.com", "api.*.com",
    "%2e", "api%2eopenai.com", "exämple.com", "аpi.openai.com", "api．openai.com", "xn--80ak6aa92e.com",
    "2130706433", "0x7f.1", "0x7f000001", "127.1", "127.0.0.1", "010.20.0.1", "10.20.0.1", "10.20.99.5",
    "10.20.255.255", "10.21.0.1", "192.168.7.10", "192.168.7.11", "192.168.7.10:8080", "256.1.1.1",
    "1.2.3.4.5", "1.2.3", "0.0.0.0", "10.20.0.1.", "a.1", "a.0x1f", "1a.com", "0x.com", "a.b-1",
    "[::1]", "::1", "[::1]:443", "[fd00:ab::1]", "fd00:ab::1", "FD00:AB:1::2", "[fd00:ab::1]:8443",
    "fd00:ac::1", "[2001:db8::53]", "2001:db8:0:0:0:0:0:53", "2001:DB8::53", "[2001:db8::54]",
    "::ffff:10.20.0.1", "[::ffff:a14:1]", "::ffff:192.168.7.10", "::10.20.0.1", "64:ff9b::10.20.0.1",
    "[fe80::1%eth0]", "[fd00:ab::1", "fd00:ab::1]", "[]", "[api.openai.com]", "1::2::3", ":::", "::",
    "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:8:9", "[::1]:", "[::1]:99999", "api.openai.com:443:1",
    "a" * 63 + ".com", "a" * 64 + ".com", ".".join(["a" * 60] * 5), "_dmarc.anthropic.com", "-x.anthropic.com",
    # whitespace around a host, and IPv6 that carries IPv4 (or is unspecified): invalid hosts
    " api.openai.com", "api.openai.com ", "\tapi.openai.com", "[::]", "::127.0.0.1", "::ffff:0:7f00:1",
    "64:ff9b::a9fe:a9fe", "64:ff9b:1::a14:1", "2002:7f00:1::", "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "::2", "::1:0:0:0", "64:ff9b:2::1", "2003::1", "2001:1::1", "10.20.0.66", "fd00:ab:dead::1", "[fd00:ab::66]",
    "fd00:ab::67", "fd00::1", "10.1.2.3", "169.254.169.254", "[2001:db8::1]", "x.openai.com",
]

PATHS = [
    "/workspace/a.txt", "/workspace/README.MD", "/workspace/notes.json", "/workspace/a.exe",
    "/workspace/archive.txt.exe", "/workspace/.env", "/workspace/.hidden.md", "/workspace/noext",
    "/workspace/trailingdot.", "/workspace", "/workspacex/a.txt", "/Workspace/a.txt", "/workspace/secrets",
    "/workspace/secrets/key.txt", "/workspace/secrets/deep/key.md", "/workspace/../etc/passwd",
    "/workspace/./a.txt", "//workspace/a.txt", "/workspace//a.txt", "/workspace/a.txt/", "workspace/a.txt",
    "./a.txt", "../a.txt", "", "/", "~/a.txt", "/workspace/a\u0000.txt", "/workspace/..a.txt", "/workspace/...",
    "/workspace/*", "/workspace/*.txt", "/tmp/x.json", "/tmp", "/tmp/../tmp/x.json", "/tmpfile.txt",
    "/data/papers/p.pdf", "/data/papers/P.PDF", "/data/papers/sub/dir/p.csv", "/data/papers/embargoed/e.pdf",
    "/data/papers/embargoed", "/data/papers", "/home/agent/notes/n.md", "/home/agent/notes/private.md",
    "/home/agent/notes/private.md/x.md", "/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/other.crt",
    "/etc/passwd", "/data/papers/résumé.pdf", "/data/papers/测试.txt", "/data/papers/file.Ⅿd",
    "/workspace/a.TXT", "/workspace/a.tXt", "/workspace/\u202etxt.exe", "/workspace/a b.txt",
    "/workspace/a\nb.txt", "/workspace\\a.txt", "/" + "/".join(["d"] * 60) + "/f.txt",
    # escapes, backslashes and segments ending in "." or " ": invalid paths; look-alikes that are not
    "/workspace/%2e%2e/etc/passwd", "/workspace/a%2fb.txt", "/workspace/%41.txt", "/workspace/100%.txt",
    "/workspace/a%zz.txt", "/workspace/a.txt ", "/workspace/secrets./k.txt", "/workspace/secrets /k.txt",
    "/workspace/a\\b.txt", "/data/papers/x.pdf.", "/data/papers/embargoed./e.pdf", "/tmp/ x.json",
]

NAMES = [
    "web_search", "Web_Search", "web_search ", "web_search\u0000", "web_searchx", "web", "file_read", "file_",
    "file", "files_read", "file_delete", "FILE_DELETE", "file_.*", "github:create_issue", "github:create_issues",
    "github:", "github:read_repo", "github:admin", "github:admin:x", "*", "**", "file_*", "", "calculator",
    "shell", "exec_rm", "exec_", "browser", "pdf_read", "pdf_sign", "pdf_sign_x", "arxiv:search",
    "openai", "github", "gitlab", "OpenAI", "semantic-scholar", "crossref", "crossref.evil", "tést", "测试",
    "a\nb", "file_\n", "(", "[", "^$", "web_search$", ".*",
    # control characters (C0, DEL, C1) are input.invalid; U+00A0 is an ordinary character
    "shell\u0000", "file_delete\u0000", "file_read\u007f", "web_search\u0085", "\u009fx", "web_search\u00a0",
]

MODELS = [
    "gpt-4o", "GPT-4O", "gpt-4o-mini", "gpt-3.5", "claude-3-opus", "claude-3-5-sonnet", "claude", "Claude-3-opus",
    "o1", "o1-mini", "o1x", "o10", "o3-mini", "o3", "o4-mini", "o3-pro", "chatgpt-4o-latest", "llama3.1-70b",
    "llama", "llama-3", "Llama-3", "llamafile", "codestral-latest", "codestral", "codestral2501",
    "mistral-large-latest", "mixtral-8x7b", "mistral", "command-r-plus", "deepseek-chat", "grok-2",
    "gemini-1.5-pro", "gemini-1.0-pro", "gemini-2.0-flash-preview", "my-local-model", "", "*", "gpt-*",
    "gpt-4o\u0000", "o3-mini\n", "claude-3-opus\u0085",
]

PROVIDERS: list[Any] = [None, "openai", "OpenAI", "anthropic", "mistral", "google", "azure", "", 5, "ANTHROPIC",
                        "openai\u0000", "\u0080anthropic"]


def _action_corpus(rng: random.Random) -> list[Any]:
    actions: list[Any] = [
        None, "tool", 1, [], {}, {"type": None}, {"type": 1}, {"type": "Tool"}, {"type": "shell"},
        {"type": ["tool"]}, {"type": "tool"}, {"type": "tool", "name": {"x": 1}}, {"type": "tool", "name": ["a"]},
        {"type": "network"}, {"type": "filesystem"}, {"type": "model"}, {"type": "api"}, {"type": "rate_limit"},
        {"type": "capability", "name": None},
    ]
    for name in NAMES:
        for kind in ("tool", "capability", "api"):
            actions.append({"type": kind, "name": name})
    for index, host in enumerate(HOSTS):
        for protocol in (("https", "http"), ("wss", "ws"))[index % 2]:
            actions.append({"type": "network", "host": host, "protocol": protocol})
    for protocol in ("https", "HTTPS", "Https", "wss", "ws", "http", "ftp", "", None, 443, "httpś"):
        actions.append({"type": "network", "host": "api.openai.com", "protocol": protocol})
    actions += [
        {"type": "network", "host": "api.openai.com"},
        {"type": "network", "host": 5, "protocol": "https"},
        {"type": "network", "host": None, "protocol": 1},
        {"type": "network", "host": ["api.openai.com"], "protocol": "https"},
    ]
    for _ in range(500):
        actions.append({"type": "network", "host": _mutate_host(rng),
                        "protocol": rng.choice(["https", "http", "wss", "ws"])})
    operations: list[Any] = ["read", "write", "delete", "list", "execute", "append", "create"]
    for path in PATHS:
        for operation in operations + [rng.choice(["READ", "fly", None, 1, ""])]:
            actions.append({"type": "filesystem", "path": path, "operation": operation})
    actions += [
        {"type": "filesystem", "path": 1, "operation": "read"},
        {"type": "filesystem", "path": None},
        {"type": "filesystem", "operation": "read"},
    ]
    for _ in range(350):
        actions.append({"type": "filesystem", "path": _mutate_path(rng), "operation": rng.choice(operations)})
    for model in MODELS:
        for provider in rng.sample(PROVIDERS, 3) + [None]:
            action: dict[str, Any] = {"type": "model", "name": model}
            if provider is not None or rng.random() < 0.3:
                action["provider"] = provider
            actions.append(action)
    actions += [{"type": "model"}, {"type": "model", "name": 4}, {"type": "model", "name": None, "provider": "x"}]
    amounts: list[Any] = [0, 1, 5, 1.0, 1.5, -1, "1", True, None, 2**53 - 1, 2**53, 1e300, 40000]
    usages: list[Any] = [0, 1, 29, 30, 59, 60, 99, 100, 999, 1000, 19999, 20000, 249999, 250000, 1e6, 2**53 - 1,
                         2.0, 2.5, -1, "1", None]
    for _ in range(400):
        usage: Any = {"minute": rng.choice(usages), "hour": rng.choice(usages)}
        if rng.random() < 0.05:
            usage = rng.choice([None, [], {"minute": 1}, {"hour": 1}, "x"])
        action = {"type": "rate_limit", "kind": rng.choice(["request", "token", "requests", None, "Request"]),
                  "amount": rng.choice(amounts), "usage": usage}
        if rng.random() < 0.03:
            del action["amount"]
        actions.append(action)
    return actions


def _mutate_host(rng: random.Random) -> str:
    host = rng.choice(HOSTS)
    steps = [
        lambda h: h.upper(), lambda h: h + ".", lambda h: h + ":" + str(rng.choice([1, 80, 443, 70000])),
        lambda h: "evil." + h, lambda h: h + ".evil.net", lambda h: "evil-" + h, lambda h: h.replace(".", "..", 1),
        lambda h: f"[{h}]", lambda h: "user@" + h, lambda h: h + "/", lambda h: h[:-1], lambda h: h[1:],
        lambda h: h.replace("a", "а"), lambda h: "*." + h, lambda h: h + "\u0000", lambda h: " " + h,
        lambda h: "64:ff9b::" + h, lambda h: "::" + h,
    ]
    for _ in range(rng.randint(1, 2)):
        host = rng.choice(steps)(host)
    return host


def _mutate_path(rng: random.Random) -> str:
    path = rng.choice(PATHS)
    steps = [
        lambda p: p + "/x.txt", lambda p: p + "/../x.txt", lambda p: p.replace("/", "//", 1), lambda p: p + "/",
        lambda p: p.upper(), lambda p: p.lstrip("/"), lambda p: p + ".md", lambda p: p + "/.", lambda p: "/" + p,
        lambda p: p.replace(".", ".\u0000", 1), lambda p: p.rsplit("/", 1)[0], lambda p: p + "/*",
        lambda p: p.replace("/", "/%2e%2e/", 1), lambda p: p + ".", lambda p: p.replace("/", "\\", 1),
        lambda p: p + " ",
    ]
    for _ in range(rng.randint(1, 2)):
        path = rng.choice(steps)(path)
    return path


def _manifest_corpus(rng: random.Random) -> list[Any]:
    manifests: list[Any] = [None, "sekuire.yml", [], {}, {"agent": None}, {"agent": "x"}, {"agent": {"llm": []}},
                            {"tools": "web_search"}, {"tools": ["web_search", 1]}, {"tools": [""]},
                            {"capabilities": []}, {"capabilities": {"provides": "x"}}, {"logging": {"enabled": True}}]
    for _ in range(300):
        llm: dict[str, Any] = {}
        if rng.random() < 0.8:
            llm["model"] = rng.choice(MODELS + [None, 3])
        if rng.random() < 0.4:
            llm["provider"] = rng.choice(PROVIDERS)
        manifest: dict[str, Any] = {"agent": {"name": "agent-x", "llm": llm}}
        if rng.random() < 0.8:
            manifest["tools"] = rng.sample(NAMES[:40], rng.randint(0, 4))
        if rng.random() < 0.4:
            manifest["capabilities"] = {"provides": rng.sample(NAMES[:40], rng.randint(0, 2))}
        if rng.random() < 0.5:
            manifest["logging"] = {"enabled": rng.choice([True, False, "true"])}
        manifests.append(manifest)
    return manifests


# -- generated policies ------------------------------------------------------------------------------------

GEN_NAMES = ["web_search", "file_*", "file_delete", "*", "github:*", "github:admin", "shell", "exec_*", "pdf_sign",
             "calculator", "openai", "crossref", "a*b", "x.y"]
GEN_DOMAINS = ["api.openai.com", "*.anthropic.com", "evil.anthropic.com", "*.arxiv.org", "export.arxiv.org",
               "*.wikipedia.org", "*.upload.wikipedia.org", "*", "10.0.0.0/8", "10.20.0.0/16", "10.20.99.0/24",
               "10.20.0.66", "192.168.7.10", "127.0.0.0/8", "169.254.0.0/16", "0.0.0.0/0", "fd00::/8", "fd00:ab::/32",
               "fd00:ab:dead::/48", "[fd00:ab::66]", "[2001:db8::53]", "2001:db8::/32", "::1", "::/0", "fe80::/10"]
GEN_PATHS = ["/workspace/*", "/workspace/secrets/*", "/tmp/*", "/etc/hosts", "/data/papers/*",
             "/data/papers/embargoed/*", "/home/agent/notes/private.md", "/*", "/"]
GEN_MODELS = ["gpt-4o", "gpt-*", "o3-*", "claude-3-opus", "*-preview", "gemini-1.0-pro", "llama*", "*"]
GEN_PROVIDERS = ["openai", "anthropic", "google", "mistral", "meta", "OpenAI", "azure"]
GEN_OPERATIONS = ["append", "create", "delete", "execute", "list", "read", "write"]


def _some(rng: random.Random, pool: list[str], most: int = 5) -> list[str]:
    return rng.sample(pool, rng.randint(0, min(most, len(pool))))


def _generated_content(rng: random.Random) -> dict[str, Any]:
    """A random policy content over pools of entries that cover every shape the lowering knows."""
    section = {"agent": {}, "permissions": {}}
    if rng.random() < 0.85:
        section["agent"]["models"] = {"allowed_providers": _some(rng, GEN_PROVIDERS),
                                      "allowed_models": _some(rng, GEN_MODELS, 3),
                                      "denied_models": _some(rng, GEN_MODELS, 2)}
    if rng.random() < 0.6:
        section["agent"]["capabilities"] = {"allowed_tools": _some(rng, GEN_NAMES), "denied_tools": _some(rng, GEN_NAMES, 3)}
    if rng.random() < 0.6:
        section["permissions"]["tools"] = {"allowed_tools": _some(rng, GEN_NAMES),
                                           "blocked_tools": _some(rng, GEN_NAMES, 3)}
    if rng.random() < 0.9:
        section["permissions"]["network"] = {
            "enabled": rng.random() < 0.85, "require_tls": rng.random() < 0.5,
            "allowed_domains": _some(rng, GEN_DOMAINS, 10), "blocked_domains": _some(rng, GEN_DOMAINS, 6)}
    if rng.random() < 0.9:
        filesystem: dict[str, Any] = {"enabled": rng.random() < 0.85, "allowed_paths": _some(rng, GEN_PATHS),
                                      "blocked_paths": _some(rng, GEN_PATHS, 3),
                                      "allowed_extensions": _some(rng, [".txt", "md", ".PDF", ".json", "csv"], 3)}
        if rng.random() < 0.5:
            filesystem["allowed_operations"] = _some(rng, GEN_OPERATIONS, 7)
        section["permissions"]["filesystem"] = filesystem
    if rng.random() < 0.7:
        section["permissions"]["apis"] = {"allowed_apis": _some(rng, GEN_NAMES), "blocked_apis": _some(rng, GEN_NAMES, 2)}
    content: dict[str, Any] = {key: value for key, value in section.items() if value}
    if rng.random() < 0.7:
        content["rate_limits"] = {"requests": {"max_per_minute": rng.choice([1, 30, 60])},
                                  "tokens": {"max_per_hour": rng.choice([1000, 250000])}}
    return content


#: How many generated policies the differential test decides the corpus under (besides the three examples).
GENERATED_POLICIES = 6


def generated_contents() -> list[dict[str, Any]]:
    """The generated policy contents, the same on every run."""
    rng = random.Random(20261202)
    contents = [_generated_content(rng) for _ in range(GENERATED_POLICIES)]
    # Shapes a few random draws may miss: a kill switch, and a disabled network and filesystem.
    networks = [c["permissions"]["network"] for c in contents if "network" in c.get("permissions", {})]
    networks[0]["enabled"] = True
    networks[0]["blocked_domains"].append("*")
    networks[-1]["enabled"] = False
    filesystems = [c["permissions"]["filesystem"] for c in contents if "filesystem" in c.get("permissions", {})]
    filesystems[-1]["enabled"] = False
    return contents


def corpus() -> tuple[list[Any], list[Any]]:
    """The (actions, manifests) of the corpus, the same on every run."""
    rng = random.Random(20261126)
    return _action_corpus(rng), _manifest_corpus(rng)


# -- engines -------------------------------------------------------------------------------------------------


def _merge(target: dict[str, Any], source: dict[str, Any]) -> None:
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


@pytest.fixture(scope="module")
def compiled(envelope_vectors) -> list[tuple[CompiledPolicy, dict[str, Any]]]:
    key = envelope_vectors["key"]
    keyring = Keyring(keys={key["key_id"]: bytes.fromhex(key["public_key_hex"])})
    result = []
    for path in EXAMPLES:
        policy = load_policy(path, keyring)
        assert policy.signature_status == "verified"
        result.append((compile_policy(policy), policy.raw_content))
    return result


@pytest.fixture(scope="module")
def generated() -> list[tuple[CompiledPolicy, dict[str, Any]]]:
    result = []
    for index, content in enumerate(generated_contents()):
        policy = unsigned_policy(content, f"ws_gen_{index}")
        result.append((compile_policy(policy), policy.raw_content))
    return result


def _cases(compiled, actions, manifests) -> Iterator[tuple[CompiledPolicy, dict[str, Any], str, Any]]:
    for policy, content in compiled:
        for action in actions:
            yield policy, content, "decision", {"action": action, "context": {"agent": "differential"}}
        for manifest in manifests:
            yield policy, content, "manifest", manifest


def _opa_results(opa_bin: str, tmp_path: Path, compiled, cases) -> list[Any]:
    bundle = tmp_path / "bundle"
    data: dict[str, Any] = {}
    for policy, _ in compiled:
        for name, source in policy.modules.items():
            (bundle / name).parent.mkdir(parents=True, exist_ok=True)
            (bundle / name).write_text(source, encoding="utf-8")
        _merge(data, policy.data)
    (bundle / "data.json").write_text(json.dumps(data), encoding="utf-8")
    queries = [{"ws": policy.workspace_id, "entry": entry, "input": doc} for policy, _, entry, doc in cases]
    (tmp_path / "input.json").write_text(json.dumps({"cases": queries}), encoding="utf-8")
    # Bind the case's input first: OPA resolves `c.input` after `with` has replaced input.
    query = ("[r | some c in input.cases; doc := c.input; "
             "r := data.sekuire.workspaces[c.ws][c.entry] with input as doc]")
    out = subprocess.run(
        [opa_bin, "eval", "--v0-compatible=false", "-d", str(bundle), "-i", str(tmp_path / "input.json"),
         "-f", "json", query],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["result"][0]["expressions"][0]["value"]


def _regorus_results(compiled, cases) -> tuple[list[Any], list[Any], list[Any]]:
    """(interpreter, compiled VM on Python objects, compiled VM on JSON text) results of every case."""
    data: dict[str, Any] = {}
    modules = []
    for policy, _ in compiled:
        modules += list(policy.modules.items())
        _merge(data, policy.data)
    engine = _regorus.Policy(modules, json.dumps(data))
    interpreted, objects, texts = [], [], []
    for policy, _, entry, doc in cases:
        ref = f"data.{policy.package}.{entry}"
        interpreted.append(engine.interpret(ref, doc))
        objects.append(engine.evaluate(ref, doc))
        texts.append(json.loads(engine.evaluate_json(ref, json.dumps(doc))))
    return interpreted, objects, texts


def test_corpus_is_large_and_covers_every_action_type() -> None:
    actions, manifests = corpus()
    assert len(actions) >= 2000
    types = {a.get("type") for a in actions if isinstance(a, dict) and isinstance(a.get("type"), str)}
    assert set(reference.ACTION_TYPES) <= types
    assert len(manifests) >= 300


def _agree(opa_bin, tmp_path, compiled, actions, manifests) -> dict[bool, int]:
    cases = list(_cases(compiled, actions, manifests))
    opa = _opa_results(opa_bin, tmp_path, compiled, cases)
    embedded, compiled_vm, compiled_vm_json = _regorus_results(compiled, cases)
    assert len(opa) == len(embedded) == len(compiled_vm) == len(compiled_vm_json) == len(cases)

    mismatches = []
    outcomes = {True: 0, False: 0}
    for (policy, content, entry, doc), from_opa, from_regorus, from_rvm, from_rvm_json in zip(
        cases, opa, embedded, compiled_vm, compiled_vm_json
    ):
        meta = policy.data["sekuire"]["workspaces"][policy.workspace_id]["policy"]["meta"]
        expected = (reference.decide(content, doc, meta) if entry == "decision"
                    else reference.check_manifest(content, doc, meta))
        outcomes[from_opa["allow"]] += 1
        if from_opa != expected or not from_regorus == from_rvm == from_rvm_json == from_opa:
            mismatches.append({"workspace": policy.workspace_id, "entry": entry, "input": doc, "reference": expected,
                               "opa": from_opa, "regorus": from_regorus, "regorus_rvm": from_rvm,
                               "regorus_rvm_json": from_rvm_json})
    assert not mismatches, json.dumps(mismatches[:5], indent=1, ensure_ascii=False) + f"\n({len(mismatches)} in all)"
    return outcomes


def test_reference_opa_and_regorus_agree(opa_bin, tmp_path, compiled) -> None:
    outcomes = _agree(opa_bin, tmp_path, compiled, *corpus())
    # A corpus where everything is denied (or allowed) would prove little.
    assert outcomes[True] > 200 and outcomes[False] > 2000


def test_generated_policies_cover_every_shape() -> None:
    contents = generated_contents()
    network = [c["permissions"]["network"] for c in contents if "network" in c.get("permissions", {})]
    blocked = [entry for n in network for entry in n["blocked_domains"]]
    allowed = [entry for n in network for entry in n["allowed_domains"]]
    for entries in (blocked, allowed):
        assert {"*"} & set(entries) and any("." in e and "/" in e for e in entries) and any(":" in e for e in entries)
    assert any(e.startswith("*.") for e in blocked)
    assert any(not n["enabled"] for n in network) and {n["require_tls"] for n in network} == {True, False}
    operations = [c["permissions"]["filesystem"].get("allowed_operations") for c in contents
                  if "filesystem" in c.get("permissions", {})]
    assert None in operations and any(o is not None and len(o) < 7 for o in operations)
    assert any("models" not in c.get("agent", {}) for c in contents)


def test_reference_opa_and_regorus_agree_under_generated_policies(opa_bin, tmp_path, generated) -> None:
    actions, manifests = corpus()
    outcomes = _agree(opa_bin, tmp_path, generated, actions, manifests[:100])
    assert outcomes[True] > 200 and outcomes[False] > 2000
