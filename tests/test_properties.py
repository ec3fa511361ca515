"""Property tests (hypothesis): random policies and actions against the reference; random bytes against the readers.

- Every valid policy the strategies can build compiles, and the embedded engine's
  decision for random actions, queried directly or through the enforcer, is
  exactly tests/reference.py's: it never allows what the semantics deny, nor
  the other way round, and never raises on any input.
- Policies with arbitrary (often illegal) entries either compile to that same
  agreement or fail with a one-line CompileError naming the entry.
- The runtime's host and path normalisation never widens what the Rego accepts.
- Random bytes and random JSON as policy.json, and random bytes and random tar
  archives as bundles, end in the project's own errors.

Settings come from tests/hypothesis_profiles.py (derandomized in CI).
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import json
import posixpath
import re
import string
import tarfile
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from sekuire.compiler import Keyring, Policy, parse_policy
from sekuire.compiler.bundle.tarball import BundleLimits, read_bundle, write_bundle
from sekuire.compiler.bundle.verify import verify_bundle
from sekuire.compiler.errors import BundleError, CompileError, PolicyError
from sekuire.compiler.policy.document import load_policy
from sekuire.compiler.rego.compile import compile_policy
from sekuire.runtime import EmbeddedEngine, InvalidActionError, PolicyEnforcer
from sekuire.runtime.normalize import normalize_host, normalize_path

from . import reference
from .hypothesis_profiles import PROPERTY_SETTINGS
from .security_support import (
    EXAMPLES,
    KEYRING,
    bundle_key,
    load_example,
    signed_bundle,
    unsigned_policy,
)

# -- policies --------------------------------------------------------------------------------------------------

LABELS = ["a", "b", "ex", "api", "x-1", "_s", "0a", "xn--p1ai", "1", "0x1f", "99"]
NAME_LABELS = [label for label in LABELS if not re.fullmatch(r"[0-9]+|0x[0-9a-f]*", label)]
SEGMENTS = ["a", "b", "dir", "x.txt", "y.MD", ".env", "c.tar.gz", "n", "é", "*"]
TOOL_NAMES = ["web_search", "file_read", "file_*", "*", "github:*", "a*b", "x.y", "(", "[a]", "é*", "**", "a.*"]
MODEL_NAMES = ["gpt-4o", "gpt-*", "o3-*", "claude-3-opus", "*-preview", "gemini-1.0-pro", "llama*", "*", "my-model"]
PROVIDERS = ["openai", "anthropic", "google", "mistral", "OpenAI", "azure", "meta"]
EXTENSIONS = [".txt", "md", ".PDF", ".Csv", "gz", ".json"]
OPERATIONS = list(reference.FILE_OPERATIONS)
WORKSPACES = st.one_of(
    st.sampled_from(["ws_abc123", "ws-1", "data", "if", "not", "w.s", "_", "A" * 128]),
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
)

_names = st.lists(st.sampled_from(NAME_LABELS), min_size=1, max_size=3)
_labels = st.lists(st.sampled_from(LABELS), min_size=0, max_size=2)
dns_names = st.builds(lambda labels, last: ".".join([*labels, last]), _labels, st.sampled_from(NAME_LABELS))
_not_mapped = st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None)


def _case(draw_upper: bool, value: str) -> str:
    return value.upper() if draw_upper else value


domain_entries = st.one_of(
    st.just("*"),
    st.builds(_case, st.booleans(), dns_names),
    st.builds(lambda upper, name: _case(upper, name) + ".", st.booleans(), dns_names),
    dns_names.map(lambda name: "*." + name),
    st.ip_addresses(v=4).map(str),
    st.builds(lambda a, p: f"{a}/{p}", st.ip_addresses(v=4), st.integers(0, 32)),
    _not_mapped.map(str),
    _not_mapped.map(lambda a: f"[{a}]"),
    st.builds(lambda a, p: str(ipaddress.ip_network(f"{a}/{p}", strict=False)), _not_mapped, st.integers(1, 128))
    .filter(lambda n: not ipaddress.ip_network(n).subnet_of(ipaddress.ip_network("::ffff:0:0/96"))),
)
path_entries = st.one_of(
    st.just("/"),
    st.just("/*"),
    st.builds(lambda segs, star: "/" + "/".join(segs) + ("/*" if star else ""),
              st.lists(st.sampled_from([s for s in SEGMENTS if s != "*"]), min_size=1, max_size=3), st.booleans()),
)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def _lists(strategy: st.SearchStrategy[Any], max_size: int = 4) -> st.SearchStrategy[list[Any]]:
    return st.lists(strategy, max_size=max_size)


def _section(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An object with any subset of ``fields``."""
    return st.fixed_dictionaries({}, optional=fields)


valid_content = st.fixed_dictionaries({}, optional={
    "agent": _section(
        models=_section(allowed_providers=_lists(st.sampled_from(PROVIDERS)),
                        allowed_models=_lists(st.sampled_from(MODEL_NAMES)),
                        denied_models=_lists(st.sampled_from(MODEL_NAMES))),
        capabilities=_section(allowed_tools=_lists(st.sampled_from(TOOL_NAMES)),
                              denied_tools=_lists(st.sampled_from(TOOL_NAMES))),
    ),
    "permissions": _section(
        network=_section(enabled=st.booleans(), require_tls=st.booleans(), allowed_domains=_lists(domain_entries, 6),
                         blocked_domains=_lists(domain_entries)),
        filesystem=_section(enabled=st.booleans(), allowed_paths=_lists(path_entries),
                            blocked_paths=_lists(path_entries), allowed_extensions=_lists(st.sampled_from(EXTENSIONS)),
                            allowed_operations=_lists(st.sampled_from(OPERATIONS))),
        tools=_section(allowed_tools=_lists(st.sampled_from(TOOL_NAMES)),
                       blocked_tools=_lists(st.sampled_from(TOOL_NAMES))),
        apis=_section(allowed_apis=_lists(st.sampled_from(TOOL_NAMES)),
                      blocked_apis=_lists(st.sampled_from(TOOL_NAMES))),
    ),
    "rate_limits": _section(
        requests=_section(max_per_minute=st.integers(0, 100), max_per_hour=st.integers(0, 1000)),
        tokens=_section(max_per_minute=st.integers(0, 10**6), max_per_hour=st.integers(0, 2**53 - 1)),
    ),
    "compliance": _section(require_audit_logging=st.booleans(), frameworks=_lists(st.sampled_from(["soc2", "gdpr"]))),
})


# -- actions ---------------------------------------------------------------------------------------------------

_hostile = st.sampled_from(["", " ", ".", "..", "@", "/", "\\", "#", "%2e", "\u0000", ":", ":443", ":99999", "[", "]",
                            "\u0430", "*", "\t", "\u00a0"])


def _spell(host: str, upper: bool, dot: bool, port: int | None) -> str:
    host = host.upper() if upper else host
    return host + ("." if dot else "") + (f":{port}" if port is not None else "")


hosts = st.one_of(
    st.builds(_spell, st.one_of(dns_names, st.ip_addresses(v=4).map(str)), st.booleans(), st.booleans(),
              _maybe(st.sampled_from([0, 443, 8080, 65535]))),
    st.builds(lambda a, port: f"[{a}]" + (f":{port}" if port else ""), st.ip_addresses(v=6), _maybe(st.just(443))),
    st.ip_addresses(v=6).map(str),
    st.builds(lambda a, b, c: a + b + c, st.one_of(dns_names, st.just("")), _hostile,
              st.one_of(dns_names, st.just(""))),
    st.text(alphabet="ab1.:[]-_x@/ ", max_size=12),
)
paths = st.one_of(
    st.builds(lambda lead, segs: lead + "/".join(segs), st.sampled_from(["/", "//", "", "./"]),
              st.lists(st.sampled_from([*SEGMENTS, "", ".", ".."]), max_size=5)),
    st.text(alphabet="/.ab*\u0000", max_size=12),
)
names = st.one_of(st.sampled_from(TOOL_NAMES), st.text(alphabet="aweb_search*.:( é\n", max_size=10))
models = st.one_of(st.sampled_from(MODEL_NAMES),
                   st.sampled_from(["GPT-4o", "o1", "o1x", "claude-", "gemini-x-preview"]),
                   st.text(alphabet="gpt-o3cla*\n", max_size=10))
counts = st.one_of(st.integers(0, 2000), st.sampled_from([2**53 - 1, 2**53, -1, 1.0, 1.5, True, "1", None]))

actions = st.one_of(
    st.builds(lambda kind, name: {"type": kind, "name": name}, st.sampled_from(["tool", "capability", "api"]), names),
    st.fixed_dictionaries({"type": st.just("network"), "host": hosts},
                          optional={"protocol": st.sampled_from(["https", "HTTPS", "wss", "http", "ftp", "", None])}),
    st.fixed_dictionaries({"type": st.just("filesystem"), "path": paths},
                          optional={"operation": st.sampled_from([*OPERATIONS, "READ", "rm", None])}),
    st.fixed_dictionaries({"type": st.just("model"), "name": models},
                          optional={"provider": st.one_of(st.sampled_from(PROVIDERS), st.sampled_from(["", None]))}),
    st.fixed_dictionaries({"type": st.just("rate_limit"), "kind": st.sampled_from(["request", "token", "req"]),
                           "amount": counts},
                          optional={"usage": st.fixed_dictionaries({"minute": counts, "hour": counts})}),
    st.one_of(st.none(), st.integers(), st.text(max_size=3), st.just({}), st.just({"type": "Tool", "name": "x"})),
)


# -- the engine against the reference --------------------------------------------------------------------------


def _agree(policy: Policy, engine: EmbeddedEngine, batch: list[Any]) -> None:
    enforcer = PolicyEnforcer(policy, engine=engine, cache=False)
    meta = {"policy_id": policy.policy_id, "version": policy.version, "hash": policy.hash}
    for action in batch:
        document = {"action": action, "context": {"agent": "prop"}}
        # Directly: the engine's whole answer is the reference's (messages included).
        assert engine.evaluate(enforcer.path, document) == reference.decide(policy.raw_content, document, meta), action
        # Through the runtime: refused as a bad argument, or the reference's decision on the action as the
        # reference itself normalises it (its own grammar: a normalisation bug in the runtime shows here).
        normalised = reference.normalize_action(action)
        if normalised is None:
            with pytest.raises(InvalidActionError):
                enforcer.check(action)
            continue
        if normalised["type"] == "rate_limit":
            normalised["usage"] = {"minute": 0, "hour": 0}
        expected = reference.decide(policy.raw_content, {"action": normalised}, meta)
        decision = enforcer.check(action)
        # Rules, not messages: an invalid host is quoted as each normaliser left it.
        assert (decision.allow, [v.rule for v in decision.violations]) == (
            expected["allow"], [v["rule"] for v in expected["violations"]]), action


@PROPERTY_SETTINGS
@given(content=valid_content, workspace_id=WORKSPACES, batch=st.lists(actions, min_size=1, max_size=25))
def test_every_valid_policy_compiles_and_decides_like_the_reference(content, workspace_id, batch):
    policy = unsigned_policy(content, workspace_id)
    with EmbeddedEngine.from_compiled(compile_policy(policy)) as engine:
        _agree(policy, engine, batch)


_wild_text = st.text(alphabet=string.ascii_letters[:6] + "*./:[]-_ 0189\u00e9\t", min_size=0, max_size=10)
wild_content = st.fixed_dictionaries({}, optional={
    "agent": _section(models=_section(allowed_providers=_lists(_wild_text), allowed_models=_lists(_wild_text)),
                      capabilities=_section(allowed_tools=_lists(_wild_text), denied_tools=_lists(_wild_text))),
    "permissions": _section(
        network=_section(allowed_domains=_lists(_wild_text), blocked_domains=_lists(_wild_text)),
        filesystem=_section(allowed_paths=_lists(_wild_text), blocked_paths=_lists(_wild_text),
                            allowed_extensions=_lists(_wild_text), allowed_operations=_lists(_wild_text)),
    ),
    "rate_limits": _section(requests=_section(max_per_minute=st.integers(0, 2**60))),
})


@PROPERTY_SETTINGS
@given(content=wild_content, batch=st.lists(actions, min_size=1, max_size=10))
def test_arbitrary_entries_compile_to_the_same_semantics_or_fail_with_a_pointer(content, batch):
    policy = unsigned_policy(content)
    try:
        compiled = compile_policy(policy)
    except CompileError as exc:
        assert exc.pointer and exc.pointer.startswith("/content/") and "\n" not in str(exc)
        return
    with EmbeddedEngine.from_compiled(compiled) as engine:
        _agree(policy, engine, batch)


# -- normalisation never widens --------------------------------------------------------------------------------

@PROPERTY_SETTINGS
@given(host=st.one_of(hosts, st.text(max_size=20)))
def test_host_normalisation_accepts_exactly_what_the_rego_accepts(host):
    try:
        normalised = normalize_host(host)
    except InvalidActionError:
        return  # only a spelling with no UTF-8 form (a lone surrogate)
    # The Rego reads the same host from either spelling (whitespace around a host is not stripped).
    assert reference.parse_host(normalised) == reference.parse_host(host)
    assert normalize_host(normalised) == normalised


@PROPERTY_SETTINGS
@given(path=st.one_of(paths, st.text(alphabet="/.a\u2025\\", max_size=30)))
def test_path_normalisation_resolves_lexically_and_never_leaves_the_root(path):
    try:
        normalised = normalize_path(path)
    except InvalidActionError:
        assert "\0" in path
        return
    if not path.startswith("/"):
        assert normalised == path  # relative: left for the Rego to refuse
        return
    # An independent oracle: POSIX normpath, with its implementation-defined leading "//" collapsed.
    assert normalised == re.sub("^/+", "/", posixpath.normpath(path))
    # Lexically normal (what the Rego may still refuse: "%2e", "\\", "a." is another matter) and idempotent.
    assert normalised == "/" or all(s not in ("", ".", "..") for s in normalised[1:].split("/"))
    assert normalize_path(normalised) == normalised


# -- hostile documents -------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def example_document() -> dict[str, Any]:
    return json.loads((EXAMPLES / "coding-assistant.json").read_text(encoding="utf-8"))


@PROPERTY_SETTINGS
@given(data=st.binary(max_size=300))
def test_random_bytes_as_policy_json_are_clean_policy_errors(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("p", numbered=True) / "policy.json"
    path.write_bytes(data)
    with pytest.raises(PolicyError) as info:
        load_policy(path, Keyring(keys={}))
    assert "\n" not in str(info.value) and str(info.value).startswith(str(path))


@PROPERTY_SETTINGS
@given(value=json_values, where=st.sampled_from(["", "content", "agent", "permissions", "network", "rate_limits"]))
def test_random_json_in_a_policy_is_refused_with_project_errors(example_document, value, where):
    document = json.loads(json.dumps(example_document))
    target = {"": None, "content": document, "agent": document["content"], "permissions": document["content"],
              "network": document["content"]["permissions"], "rate_limits": document["content"]}[where]
    if target is None:
        document = value
    else:
        target[where] = value
    assume(document != example_document)
    with pytest.raises(PolicyError):
        parse_policy(document, KEYRING)


@pytest.fixture(scope="module")
def signed() -> bytes:
    return signed_bundle(load_example("coding-assistant"))


@PROPERTY_SETTINGS
@given(data=st.one_of(st.binary(max_size=400), st.binary(max_size=400).map(lambda b: b"\x1f\x8b" + b)))
def test_random_bytes_as_a_bundle_are_clean_bundle_errors(data):
    with pytest.raises(BundleError) as info:
        read_bundle(data, source="random.tar.gz", limits=BundleLimits(max_total_bytes=1 << 20))
    assert "\n" not in str(info.value)


members = st.lists(
    st.tuples(st.one_of(st.sampled_from([".manifest", "data.json", ".signatures.json", "a/data.json", "x.rego",
                                         "../x", "/abs", "a//b", "a/./b", "p.signatures.json", "data.yaml"]),
                        st.text(alphabet="ab/._\u00e9\\", min_size=1, max_size=8)),
              st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE]),
              st.one_of(st.binary(max_size=40), json_values.map(lambda v: json.dumps(v).encode()))),
    max_size=5,
)


@PROPERTY_SETTINGS
@given(entries=members)
def test_random_tar_archives_are_read_or_refused_and_never_verify(entries, signed):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, kind, content in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "data.json" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            info.size = len(content) if kind == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(content) if kind == tarfile.REGTYPE else None)
    try:
        bundle = read_bundle(gzip.compress(buffer.getvalue()), source="random.tar.gz")
        bundle.data, bundle.modules  # noqa: B018 - the lazy parts must fail cleanly too
    except BundleError as exc:
        assert "\n" not in str(exc)
        return
    # Whatever was readable is not signed by our key: verification refuses it with a project error.
    with pytest.raises(BundleError):
        verify_bundle(bundle, key=bundle_key().public)


@PROPERTY_SETTINGS
@given(name=st.sampled_from(["data.json", ".manifest", ".signatures.json"]), value=json_values)
def test_a_signed_bundle_with_any_json_swapped_in_is_refused(signed, name, value):
    files = dict(read_bundle(signed, source="b").files)
    replacement = json.dumps(value).encode()
    assume(json.loads(replacement) != json.loads(files[name]))  # an equal document, re-spelt, verifies
    files[name] = replacement
    try:
        bundle = read_bundle(write_bundle(files), source="b")
    except BundleError:
        return
    with pytest.raises(BundleError):
        verify_bundle(bundle, key=bundle_key().public)


# -- what the fuzzer found (python -m tests.fuzz), kept fixed -------------------------------------------------

FUZZ_FINDINGS = [
    # hmac.compare_digest raised TypeError on a non-ASCII hash instead of a hash mismatch.
    ("non-ASCII hash", lambda d: {**d, "hash": "\u00e9" * 64}, "HashMismatchError", "/hash"),
    # canonical JSON raised UnicodeEncodeError on a lone surrogate escape.
    ("lone surrogate", lambda d: {**d, "content": {**d["content"], "compliance": {"note": "\ud800"}}},
     "PolicyFormatError", None),
    # a key with a newline made a two-line error through the JSON pointer.
    ("newline in a key", lambda d: {**d, "content": {**d["content"], "agent": {"mod\nels": {}}}},
     "PolicyFormatError", "/content/agent/mod\\u000aels"),
]


@pytest.mark.parametrize(("change", "error", "pointer"), [f[1:] for f in FUZZ_FINDINGS],
                         ids=[f[0] for f in FUZZ_FINDINGS])
def test_fuzzer_findings_are_clean_one_line_errors(example_document, change, error, pointer):
    with pytest.raises(PolicyError) as info:
        parse_policy(change(example_document), KEYRING)
    assert type(info.value).__name__ == error and info.value.pointer == pointer and "\n" not in str(info.value)

