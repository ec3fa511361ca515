"""OPA bundles: deterministic writer, hostile-input reader, OPA's canonical hashing, signing and verification.

Signed bundles are checked against the real OPA: ``opa run --server`` activates
them, ``opa build -b BUNDLE --verification-key`` gives OPA's verdict on each
tampered copy (the same reader and verifier ``opa run`` uses, without a server).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import random
import subprocess
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sekuire.compiler.bundle.gojson import canonical_form, file_digest
from sekuire.compiler.bundle.keys import (
    SIGNING_ALGORITHMS,
    load_private_key,
    load_public_key,
)
from sekuire.compiler.bundle.signing import BundleSigner
from sekuire.compiler.bundle.tarball import (
    DATA_FILE,
    MANIFEST_FILE,
    SIGNATURES_FILE,
    BundleLimits,
    build_bundle,
    load_bundle,
    read_bundle,
    write_bundle,
)
from sekuire.compiler.bundle.verify import decode_signature, verify_bundle
from sekuire.compiler.cli import main
from sekuire.compiler.errors import BundleError, BundleVerificationError

from .conftest import VECTORS

OPA_VECTORS = VECTORS / "opa-bundle"
WS_ROOT = "sekuire/workspaces/ws_t"
MODULE = f"{WS_ROOT}/policy.rego"
REGO = """package sekuire.workspaces.ws_t

default allow := false

allow if input.tool in data.sekuire.workspaces.ws_t.tools
"""
HMAC_SECRET = b"s" * 64  # long enough for HS512 (RFC 7518 section 3.2)


@dataclass
class Compiled:
    """Stand-in for compile_policy's CompiledPolicy: the three attributes build_bundle reads."""

    modules: dict[str, str] = field(default_factory=lambda: {MODULE: REGO})
    data: dict[str, Any] = field(
        default_factory=lambda: {"sekuire": {"workspaces": {"ws_t": {"tools": ["calc", "web_search"], "limit": 1.5}}}}
    )
    manifest: dict[str, Any] = field(
        default_factory=lambda: {
            "revision": "pol_t@v3-0123456789abcdef",
            "roots": [WS_ROOT],
            "rego_version": 1,
            "metadata": {"policy_id": "pol_t", "workspace_id": "ws_t", "version": "3"},
        }
    )


# --- keys and helpers -----------------------------------------------------------------------------


def _pem_pair(private: Any) -> tuple[bytes, bytes]:
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, pub


@pytest.fixture(scope="session")
def keys() -> dict[str, tuple[bytes, bytes]]:
    """(signing key, verification key) per algorithm: PEM pairs, the shared secret for HS*."""
    rsa_pair = _pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    pairs: dict[str, tuple[bytes, bytes]] = {}
    for alg in SIGNING_ALGORITHMS:
        if alg[:2] in ("RS", "PS"):
            pairs[alg] = rsa_pair
        elif alg.startswith("HS"):
            pairs[alg] = (HMAC_SECRET, HMAC_SECRET)
    for alg, curve in (("ES256", ec.SECP256R1()), ("ES384", ec.SECP384R1()), ("ES512", ec.SECP521R1())):
        pairs[alg] = _pem_pair(ec.generate_private_key(curve))
    return pairs


def _signed(keys, alg: str = "RS256", compiled: Compiled | None = None, **signer_args: Any) -> bytes:
    return build_bundle(compiled or Compiled(), signer=BundleSigner(keys[alg][0], alg=alg, **signer_args))


def _key_arg(keys, alg: str, tmp_path: Path) -> str:
    """What OPA's --verification-key takes: a PEM file, or the HMAC secret itself."""
    if alg.startswith("HS"):
        return keys[alg][1].decode()
    path = tmp_path / f"{alg}.pub.pem"
    path.write_bytes(keys[alg][1])
    return str(path)


def _opa_verdict(opa: str, bundle: bytes, tmp_path: Path, key_arg: str, alg: str = "RS256", *extra: str):
    """OPA's own load-and-verify of a bundle file (the reader ``opa run --bundle`` uses)."""
    path = tmp_path / "candidate.tar.gz"
    path.write_bytes(bundle)
    cmd = [opa, "build", "-b", str(path), "--verification-key", key_arg, "--signing-alg", alg]
    cmd += ["-o", str(tmp_path / "out.tar.gz"), *extra]
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)


def _files(bundle_bytes: bytes) -> dict[str, bytes]:
    return dict(read_bundle(bundle_bytes, source="b.tar.gz").files)


def _flip_last_letter(content: bytes) -> bytes:
    """Change the case of the last ASCII letter: one byte, still valid JSON/Rego, different meaning."""
    index = max(i for i, byte in enumerate(content) if chr(byte).isascii() and chr(byte).isalpha())
    return content[:index] + bytes([content[index] ^ 0x20]) + content[index + 1 :]


def _raw_tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, content in members:
            info.size = len(content) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(content) if info.isreg() else None)
    return buffer.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def _post_allow(url: str, tool: str) -> Any:
    response = httpx.post(f"{url}/v1/data/sekuire/workspaces/ws_t/allow", json={"input": {"tool": tool}}, timeout=10)
    response.raise_for_status()
    return response.json().get("result")


# --- writer ---------------------------------------------------------------------------------------


def test_same_files_give_byte_identical_bundles_in_any_order():
    files = {MODULE: REGO.encode(), DATA_FILE: b"{}", MANIFEST_FILE: b'{"revision":"r"}'}
    reordered = dict(reversed(list(files.items())))
    assert write_bundle(files) == write_bundle(reordered)
    assert build_bundle(Compiled()) == build_bundle(Compiled())


@pytest.mark.parametrize("alg", ["RS256", "HS256"])
def test_deterministic_algorithms_give_byte_identical_signed_bundles(keys, alg):
    assert _signed(keys, alg) == _signed(keys, alg)


def test_tar_and_gzip_headers_carry_no_time_owner_or_name():
    data = build_bundle(Compiled())
    assert data[:4] == b"\x1f\x8b\x08\x00"  # deflate, no flags: no file name or comment in the header
    assert data[4:8] == b"\x00\x00\x00\x00"  # gzip mtime
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(f"/{name}" for name in (DATA_FILE, MANIFEST_FILE, MODULE))
    for member in members:
        assert member.type == tarfile.REGTYPE
        header = (member.mode, member.mtime, member.uid, member.gid, member.uname, member.gname)
        assert header == (0o600, 0, 0, 0, "", "")


def test_opa_build_writes_the_same_tar_header_fields(opa_bin, tmp_path):
    src = tmp_path / "src"
    (src / WS_ROOT).mkdir(parents=True)
    (src / MODULE).write_text(REGO)
    subprocess.run([opa_bin, "build", "-b", ".", "-o", str(tmp_path / "opa.tar.gz")], cwd=src, check=True, timeout=60)
    with tarfile.open(tmp_path / "opa.tar.gz") as tar:
        opa_member = tar.getmember(f"/{MODULE}")
    with tarfile.open(fileobj=io.BytesIO(build_bundle(Compiled())), mode="r:gz") as tar:
        ours = tar.getmember(f"/{MODULE}")
    fields = ("mode", "mtime", "uid", "gid", "uname", "gname", "type")
    assert {f: getattr(ours, f) for f in fields} == {f: getattr(opa_member, f) for f in fields}


@pytest.mark.parametrize(
    "name",
    ["../x.rego", "/abs.rego", "a//b.rego", "./a.rego", "a/./b.rego", "a/../b.rego", "dir/", "a\\b.rego", "",
     "nested/.signatures.json", "mysignatures.json", "x.manifest", "dir/.manifest", "dir/data.yaml", "patch.json",
     "bad\x00name", "new\nline.rego"],
)  # fmt: skip
def test_writer_refuses_unsafe_or_ambiguous_names(name):
    with pytest.raises(BundleError):
        write_bundle({name: b"x"})


def test_build_bundle_puts_the_full_data_document_at_the_root():
    compiled = Compiled()
    bundle = read_bundle(build_bundle(compiled), source="b.tar.gz")
    assert set(bundle.files) == {DATA_FILE, MANIFEST_FILE, MODULE}
    assert json.loads(bundle.files[DATA_FILE]) == compiled.data
    assert bundle.data == compiled.data
    assert bundle.modules == {MODULE: REGO}
    assert bundle.manifest == compiled.manifest
    assert (bundle.revision, bundle.roots, bundle.signed) == ("pol_t@v3-0123456789abcdef", [WS_ROOT], False)


def test_build_bundle_refuses_modules_that_are_not_rego_or_collide():
    with pytest.raises(BundleError, match="must end in .rego"):
        build_bundle(Compiled(modules={"policy.txt": REGO}))
    with pytest.raises(BundleError, match="data.json: cannot be canonicalised"):
        build_bundle(Compiled(data={"x": float("nan")}))


# --- reader: hostile archives ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_member("/evil", tarfile.SYMTYPE, "/etc/passwd"), "not a regular file (symlink)"),
        (_member("/evil", tarfile.LNKTYPE, "data.json"), "not a regular file (hard link)"),
        (_member("/fifo", tarfile.FIFOTYPE), "not a regular file"),
        (_member("/dev", tarfile.CHRTYPE), "not a regular file"),
        (_member("/c", tarfile.CONTTYPE), "not a regular file"),
        (_member("../x.rego"), "invalid file name '../x.rego'"),
        (_member("/../x.rego"), "invalid file name '../x.rego'"),
        (_member("a/../../x.rego"), "invalid file name"),
        (_member("//etc/x.rego"), "invalid file name '/etc/x.rego'"),
        (_member("/x/signatures.json"), "read it as the bundle's signatures"),
    ],
)
def test_reader_refuses_hostile_members(member, message):
    data = gzip.compress(_raw_tar([(_member("/data.json"), b"{}"), (member, b"x")]))
    with pytest.raises(BundleError, match="^b.tar.gz: ") as info:
        read_bundle(data, source="b.tar.gz")
    assert message in str(info.value)


def test_reader_refuses_duplicate_names_even_with_and_without_the_slash():
    data = gzip.compress(_raw_tar([(_member("/a.rego"), b"x"), (_member("a.rego"), b"y")]))
    with pytest.raises(BundleError, match="a.rego: duplicate file"):
        read_bundle(data, source="b.tar.gz")


def test_reader_skips_directory_entries():
    data = gzip.compress(_raw_tar([(_member("/sub", tarfile.DIRTYPE), b""), (_member("/sub/x.rego"), b"package x\n")]))
    assert list(read_bundle(data, source="b.tar.gz").files) == ["sub/x.rego"]


def test_gzip_bomb_stops_at_the_default_limit_without_inflating_it():
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    bomb = b"".join(compressor.compress(chunk) for _ in range(256)) + compressor.flush()  # 256 MiB of zeros
    assert len(bomb) < 1 << 20
    with pytest.raises(BundleError, match="uncompressed size exceeds"):
        read_bundle(bomb, source="bomb.tar.gz")


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (BundleLimits(max_file_bytes=1000), "b.rego: size 5000 exceeds the 1000-byte limit"),
        (BundleLimits(max_total_bytes=6000), "total size exceeds the 6000-byte limit"),
        (BundleLimits(max_compressed_bytes=100), "compressed size"),
    ],
)
def test_size_limits(limits, message):
    data = write_bundle({DATA_FILE: b" " * 4998 + b"{}", "b.rego": b"x" * 5000})
    with pytest.raises(BundleError, match=message):
        read_bundle(data, source="b.tar.gz", limits=limits)


def test_too_many_files():
    data = gzip.compress(_raw_tar([(_member(f"/f{i}.rego"), b"") for i in range(1001)]))
    with pytest.raises(BundleError, match="more than 1000 files"):
        read_bundle(data, source="b.tar.gz")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a gzip file"),
        (random.Random(1).randbytes(4096), "not a gzip file"),
        (b"\x1f\x8b" + random.Random(2).randbytes(4096), "gzip"),
        (_raw_tar([(_member("/a.rego"), b"x")]), "not a gzip file"),
        (gzip.compress(b"not a tar archive at all" * 40), "not a valid tar archive"),
        (gzip.compress(_raw_tar([(_member("/a.rego"), b"x")]) + b"hidden"), "data after the end of the tar archive"),
        (gzip.compress(_raw_tar([(_member("/a.rego"), b"x" * 600)]))[:-8], "truncated gzip stream"),
        (gzip.compress(_raw_tar([(_member("/a.rego"), b"x" * 600)]))[:40], "truncated gzip stream"),
        (gzip.compress(b"x") + b"\x00\x00", "gzip"),
    ],
    ids=["empty", "random", "random-gzip-magic", "plain-tar", "not-tar", "trailing-data", "no-trailer", "cut",
         "junk-member"],
)
def test_malformed_archives_fail_with_one_line(data, message):
    with pytest.raises(BundleError) as info:
        read_bundle(data, source="b.tar.gz")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_truncated_tar_member_fails():
    tar = _raw_tar([(_member("/a.rego"), b"x" * 5000)])
    with pytest.raises(BundleError, match="b.tar.gz: "):
        read_bundle(gzip.compress(tar[:2048]), source="b.tar.gz")


def test_concatenated_gzip_members_are_read_like_go_does():
    tar = _raw_tar([(_member("/a.rego"), b"package a\n")])
    data = gzip.compress(tar[:700], mtime=0) + gzip.compress(tar[700:], mtime=0)
    assert read_bundle(data, source="b.tar.gz").files == {"a.rego": b"package a\n"}


def test_load_bundle_names_the_missing_file(tmp_path):
    with pytest.raises(BundleError, match=f"^{tmp_path}/nope.tar.gz: cannot read"):
        load_bundle(tmp_path / "nope.tar.gz")


# --- OPA's canonical JSON hashing -----------------------------------------------------------------


def test_shared_vectors_digests_and_canonical_bytes():
    bundle = load_bundle(OPA_VECTORS / "bundle.tar.gz")
    digests = json.loads((OPA_VECTORS / "digests.json").read_text())
    for name, expected in digests.items():
        assert file_digest(name, bundle.files[name]) == expected["sha256"], name
        if "canonical_bytes_file" in expected:
            expected_bytes = (OPA_VECTORS / expected["canonical_bytes_file"]).read_bytes()
            assert canonical_form(name, bundle.files[name]) == expected_bytes


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        (b'{ "b": 1.0, "a": [1e3, -0.0, 12345678901234567890] }', b'{"a":[1e3,-0.0,12345678901234567890],"b":1.0}'),
        (b'{"z":1,"\xc3\xa9":2,"A":3,"\xef\xbf\xbf":4,"\xf0\x9f\x98\x80":5}',
         b'{"A":3,"z":1,"\xc3\xa9":2,"\xef\xbf\xbf":4,"\xf0\x9f\x98\x80":5}'),  # UTF-8 byte order, not UTF-16
        (b'"\\u003c\\u003e\\u0026 \\/ caf\\u00e9"', '"<>& / café"'.encode()),
        (b'"\\b\\f\\n\\r\\t \\u0001 \\u001f \\u007f"', b'"\\b\\f\\n\\r\\t \\u0001 \\u001f \x7f"'),
        (b'"\\u2028\\u2029 \xe2\x80\xa8"', b'"\\u2028\\u2029 \\u2028"'),
        (b'"\\ud800 x \\udc00 \\ud83d\\ude00"', '"\ufffd x \ufffd \U0001f600"'.encode()),
        (b'"q\\"b\\\\"', b'"q\\"b\\\\"'),
        (b"[true,false,null,{}]", b"[true,false,null,{}]"),
    ],
    ids=["numbers-as-written", "key-order", "html-and-escapes", "control-chars", "line-separators", "surrogates",
         "quote-backslash", "literals"],
)  # fmt: skip
def test_canonical_form_reproduces_go(written, canonical):
    assert canonical_form("data.json", written) == canonical
    assert canonical_form("sub/dir/data.json", written) == canonical
    assert canonical_form("x.rego", written) == written  # other files are hashed as raw bytes


@pytest.mark.parametrize("written", [b'{"a":1,"a":2}', b"[NaN]", b"\xef\xbb\xbf{}", b"{", b'"\xff"', b"{} {}"])
def test_canonical_form_refuses_what_it_cannot_hash_exactly(written):
    with pytest.raises(BundleError, match="data.json: cannot be hashed"):
        canonical_form("data.json", written)


def test_opa_agrees_with_our_canonical_form_on_tricky_json(opa_bin, keys, tmp_path):
    data = (
        b'{"sekuire": {"workspaces": {"ws_t": {"tools": ["calc"], "n": [1.0, 1e3, -0.0, 1E+2, 12345678901234567890],'
        b' "s": "\\u003c&> \\b\\f\\u0001\\u007f \\u2028 \xe2\x80\xa9 caf\\u00e9 \\ud800 \\ud83d\\ude00 \\/",'
        b' "\xc3\xa9": 1, "z": 2, "\xf0\x9f\x98\x80": 3, "\xef\xbf\xbf": 4}}}}'
    )
    manifest = b'{"roots": ["sekuire/workspaces/ws_t"], "revision": "t\\u00e9"}'
    files = {DATA_FILE: data, MANIFEST_FILE: manifest, MODULE: REGO.encode()}
    files[SIGNATURES_FILE] = BundleSigner(keys["RS256"][0]).sign(files)
    result = _opa_verdict(opa_bin, write_bundle(files), tmp_path, _key_arg(keys, "RS256", tmp_path))
    assert result.returncode == 0, result.stdout


# --- the bundle OPA built and signed --------------------------------------------------------------


@pytest.fixture()
def vector_key_path() -> str:
    return str(OPA_VECTORS / "test-rsa-public.pem")


def _reindent(text: str) -> str:
    """Insert whitespace between tokens only (never inside strings), keeping every literal as written."""
    out, in_string, escaped = [], False, False
    for char in text:
        out.append(char)
        if in_string:
            in_string = not (char == '"' and not escaped)
            escaped = char == "\\" and not escaped
        elif char == '"':
            in_string = True
        elif char in "{[,":
            out.append("\n    ")
        elif char == ":":
            out.append(" ")
    return "".join(out) + "\n"


def test_opa_built_bundle_verifies_and_reindented_data_keeps_its_signature(opa_bin, tmp_path, vector_key_path):
    bundle = load_bundle(OPA_VECTORS / "bundle.tar.gz")
    verified = verify_bundle(bundle, key=Path(vector_key_path).read_bytes())
    assert verified.files == (".manifest", "data.json", "src/sekuire/workspaces/ws_vec/policy.rego")
    assert (verified.alg, verified.key_id, verified.scope, verified.revision) == ("RS256", "default", None, "vec-1")

    files = dict(bundle.files)
    files[DATA_FILE] = _reindent(files[DATA_FILE].decode()).encode()
    assert files[DATA_FILE] != bundle.files[DATA_FILE]
    reindented = write_bundle(files)
    verify_bundle(read_bundle(reindented, source="re.tar.gz"), key=Path(vector_key_path).read_bytes())
    assert _opa_verdict(opa_bin, reindented, tmp_path, vector_key_path).returncode == 0


def test_changing_one_value_in_the_opa_built_bundle_is_a_digest_mismatch(opa_bin, tmp_path, vector_key_path):
    files = dict(load_bundle(OPA_VECTORS / "bundle.tar.gz").files)
    files[DATA_FILE] = files[DATA_FILE].replace(b'"calc"', b'"rm"')
    tampered = write_bundle(files)
    with pytest.raises(BundleVerificationError, match="^re.tar.gz: data.json: digest mismatch$"):
        verify_bundle(read_bundle(tampered, source="re.tar.gz"), key=Path(vector_key_path).read_bytes())
    result = _opa_verdict(opa_bin, tampered, tmp_path, vector_key_path)
    assert result.returncode != 0 and "data.json: digest mismatch" in result.stdout


# --- signing matches opa build --------------------------------------------------------------------


def _jwt_parts(signatures_json: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    token = json.loads(signatures_json)["signatures"][0]
    header, payload = (json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in token.split(".")[:2])
    return header, payload


def test_signature_matches_what_opa_build_writes_field_by_field(opa_bin, keys, tmp_path):
    unsigned = _files(build_bundle(Compiled()))
    src = tmp_path / "src"
    for name, content in unsigned.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(content)
    (tmp_path / "key.pem").write_bytes(keys["RS256"][0])
    out = tmp_path / "opa.tar.gz"
    subprocess.run([opa_bin, "build", "-b", ".", "--signing-key", str(tmp_path / "key.pem"), "-o", str(out)],
                   cwd=src, check=True, timeout=60)  # fmt: skip
    opa_header, opa_payload = _jwt_parts(load_bundle(out).files[SIGNATURES_FILE])
    our_header, our_payload = _jwt_parts(_files(_signed(keys))[SIGNATURES_FILE])
    assert our_header == opa_header == {"alg": "RS256", "kid": "default", "typ": "JWT"}
    by_name = lambda entries: sorted(entries, key=lambda entry: entry["name"])  # noqa: E731
    assert by_name(our_payload.pop("files")) == by_name(opa_payload.pop("files"))  # same names, hashes, algorithm
    assert our_payload == opa_payload == {"keyid": "default"}


def test_payload_lists_every_file_with_scope_and_extra_claims(keys):
    files = _files(_signed(keys, scope="write", claims={"iss": "sekuire", "iat": 1700000000}))
    info = decode_signature(read_bundle(write_bundle(files), source="b.tar.gz"))
    assert info is not None
    assert [entry.name for entry in info.files] == sorted(name for name in files if name != SIGNATURES_FILE)
    for entry in info.files:
        assert (entry.algorithm, entry.hash) == ("SHA-256", file_digest(entry.name, files[entry.name]))
    claims = (info.kid, info.key_id, info.scope, info.issuer, info.issued_at)
    assert claims == ("default", "default", "write", "sekuire", 1700000000)


def test_claims_file_numbers_are_kept_as_written(keys, tmp_path):
    claims = tmp_path / "claims.json"
    claims.write_text('{"iss": "ci", "build": {"ratio": 1.50}}')
    (tmp_path / "key.pem").write_bytes(keys["RS256"][0])
    signer = BundleSigner.from_file(tmp_path / "key.pem", claims_file=claims)
    assert b'"build":{"ratio":1.50}' in signer.payload({DATA_FILE: b"{}"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alg": "EdDSA"}, "EdDSA is not accepted by OPA for bundle signatures"),
        ({"alg": "none"}, "unsupported signing algorithm 'none'"),
        ({"claims": {"files": []}}, "claim 'files' is the signer's own"),
        ({"claims": {"keyid": "other"}}, "claim 'keyid' is 'other'"),
        ({"claims": {"Scope": "x"}}, "claim 'Scope': OPA reads it as 'scope'"),
        ({"claims": {"scope": "a"}, "scope": "b"}, "claim 'scope' is 'a'"),
        ({"claims": {"iat": 1.5}}, "claim 'iat' must be an integer"),
        ({"key_id": ""}, "non-empty"),
    ],
)
def test_signer_refuses_what_opa_would_not_verify(keys, kwargs, message):
    with pytest.raises(BundleError, match=message):
        BundleSigner(keys["RS256"][0], **kwargs)


def test_signer_refuses_keys_that_do_not_fit_the_algorithm(keys):
    ed_pem, _ = _pem_pair(ed25519.Ed25519PrivateKey.generate())
    weak_pem, _ = _pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    cases = [
        (ed_pem, "RS256", "Ed25519 keys cannot sign OPA bundles"),
        (keys["ES256"][0], "RS256", "RS256 needs an RSA key, got an EC key"),
        (keys["ES384"][0], "ES256", "ES256 needs an EC key on secp256r1, got one on secp384r1"),
        (keys["RS256"][0], "HS256", "HS256 takes a shared secret, not a PEM key"),
        (b"short", "HS256", "HS256 needs a secret of at least 32 bytes"),
        (weak_pem, "RS256", "1024 bits is too weak"),
        (b"not a key", "RS256", "not a PEM private key"),
    ]
    for key, alg, message in cases:
        with pytest.raises(BundleError, match=message):
            BundleSigner(key, alg=alg)


def test_signer_repr_shows_no_key_material(keys):
    text = repr(BundleSigner(keys["HS256"][0], alg="HS256")) + repr(BundleSigner(keys["RS256"][0]))
    assert "sss" not in text and "PRIVATE" not in text and "RS256" in text


# --- verification ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", SIGNING_ALGORITHMS)
def test_sign_verify_round_trip(keys, alg):
    bundle = read_bundle(_signed(keys, alg, key_id="prod"), source="b.tar.gz")
    verified = verify_bundle(bundle, key=keys[alg][1], alg=alg, key_id="prod")
    assert verified.files == (".manifest", "data.json", MODULE)
    assert (verified.alg, verified.key_id, verified.revision) == (alg, "prod", "pol_t@v3-0123456789abcdef")


@pytest.mark.parametrize("alg", ["RS256", "ES256", "ES384", "ES512"])
def test_algorithm_defaults_from_the_key(keys, alg):
    verify_bundle(read_bundle(_signed(keys, alg), source="b.tar.gz"), key=keys[alg][1])


def _resign(keys, files: dict[str, bytes], payload: dict[str, Any], header: dict[str, Any] | None = None) -> dict[str, bytes]:
    """``files`` with a JWT carrying ``payload`` exactly, validly signed with the RS256 test key."""
    import jwt

    headers = header or {"kid": "default"}
    token = jwt.PyJWS().encode(json.dumps(payload).encode(), keys["RS256"][0], algorithm="RS256", headers=headers)
    return {**files, SIGNATURES_FILE: json.dumps({"signatures": [token]}).encode()}


def _entries(files: dict[str, bytes], algorithm: str = "SHA-256") -> list[dict[str, str]]:
    def digest(name: str, content: bytes) -> str:
        return "00" * 16 if algorithm == "MD5" else file_digest(name, content, algorithm)

    return [{"name": n, "hash": digest(n, c), "algorithm": algorithm} for n, c in sorted(files.items()) if n != SIGNATURES_FILE]


def _unsigned() -> dict[str, bytes]:
    return _files(build_bundle(Compiled()))


def _with_signatures(document: dict[str, Any]):
    def build(keys) -> dict[str, bytes]:
        token = json.loads(_files(_signed(keys))[SIGNATURES_FILE])["signatures"][0]
        replaced = json.loads(json.dumps(document).replace('"TOKEN"', json.dumps(token)))
        return {**_unsigned(), SIGNATURES_FILE: json.dumps(replaced).encode()}

    return build


def _signed_then(change):
    return lambda keys: change(_files(_signed(keys)))


# (case id, files built from the test keys, verify_bundle arguments, the one-line message)
VERIFY_FAILURES = [
    ("unsigned", lambda keys: _unsigned(), {}, ".signatures.json: missing (the bundle is not signed)"),
    ("no-jwt", _with_signatures({"signatures": []}), {}, ".signatures.json: missing JWT (expected exactly one)"),
    ("two-jwts", _with_signatures({"signatures": ["TOKEN", "TOKEN"]}), {},
     ".signatures.json: multiple JWTs not supported (expected exactly one)"),
    ("plugin", _with_signatures({"signatures": ["TOKEN"], "plugin": "kms"}), {},
     ".signatures.json: signing plugin 'kms' is not supported"),
    ("not-a-jwt", _with_signatures({"signatures": ["a.b"]}), {},
     "signature: malformed JWT (expected three base64url parts)"),
    ("extra-file", _signed_then(lambda f: {**f, "extra.rego": b"package extra\n"}), {},
     "missing file in signatures: extra.rego"),
    ("removed-file", _signed_then(lambda f: {n: c for n, c in f.items() if n != MODULE}), {},
     f"file listed in signatures but not in the bundle: {MODULE}"),
    ("data-changed", _signed_then(lambda f: {**f, DATA_FILE: b'{"sekuire": {}}'}), {}, "data.json: digest mismatch"),
    ("rego-changed", _signed_then(lambda f: {**f, MODULE: f[MODULE] + b"\n"}), {}, f"{MODULE}: digest mismatch"),
    ("data-not-json", _signed_then(lambda f: {**f, DATA_FILE: b"{not json"}), {},
     "data.json: cannot be hashed: malformed JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    ("scoped", lambda keys: _files(_signed(keys, scope="write")), {},
     "scope mismatch: signed for 'write', expected no scope"),
    ("unscoped", lambda keys: _files(_signed(keys)), {"scope": "read"},
     "scope mismatch: signed for no scope, expected 'read'"),
    ("key-id", lambda keys: _files(_signed(keys, key_id="dev")), {"key_id": "prod"},
     "signature: key id 'dev' does not match the expected 'prod'"),
    ("algorithm", lambda keys: _files(_signed(keys, "PS256")), {},
     "signature: algorithm 'PS256' does not match the expected 'RS256'"),
    ("other-secret", lambda keys: _files(_signed(keys, "HS256")), {"key": b"t" * 32, "alg": "HS256"},
     "signature: invalid (not made by the verification key)"),
    ("md5", lambda keys: _resign(keys, _unsigned(), {"files": _entries(_unsigned(), "MD5")}), {},
     ".manifest: unsupported hash algorithm 'MD5' (use SHA-256)"),
    ("listed-twice", lambda keys: _resign(keys, _unsigned(), {"files": _entries(_unsigned()) * 2}), {},
     ".signatures.json: .manifest listed twice"),
    ("case-variant-claim", lambda keys: _resign(keys, _unsigned(), {"files": _entries(_unsigned()), "Scope": "x"}), {},
     "signature: payload field 'Scope' is ambiguous (OPA reads it as 'scope')"),
    ("iat-not-integer", lambda keys: _resign(keys, _unsigned(), {"files": _entries(_unsigned()), "iat": "now"}), {},
     "signature: payload 'iat' must be an integer"),
    ("crit-header", lambda keys: _resign(keys, _unsigned(), {"files": _entries(_unsigned())}, {"crit": ["exp"]}), {},
     "signature: JWT header 'crit' is not supported"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "kwargs", "message"), [case[1:] for case in VERIFY_FAILURES],
                         ids=[case[0] for case in VERIFY_FAILURES])  # fmt: skip
def test_each_verification_failure_has_its_own_message(keys, build, kwargs, message):
    bundle = read_bundle(write_bundle(build(keys)), source="b.tar.gz")
    arguments = {"key": keys["RS256"][1], **kwargs}
    with pytest.raises(BundleVerificationError) as info:
        verify_bundle(bundle, **arguments)
    assert str(info.value) == f"b.tar.gz: {message}"


def test_a_different_key_is_an_invalid_signature(keys):
    other = _pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))[1]
    with pytest.raises(BundleVerificationError, match=r"^b: signature: invalid \(not made by the verification key\)$"):
        verify_bundle(read_bundle(_signed(keys), source="b"), key=other)


def test_other_hash_algorithms_of_the_sha2_family_verify(keys):
    files = _unsigned()
    bundle = read_bundle(write_bundle(_resign(keys, files, {"files": _entries(files, "SHA-512")})), source="b")
    assert verify_bundle(bundle, key=keys["RS256"][1]).files == tuple(sorted(files))


def test_verification_key_problems_are_bundle_errors(keys, tmp_path):
    bundle = read_bundle(_signed(keys), source="b.tar.gz")
    with pytest.raises(BundleError, match="expected a public key, got a private key"):
        verify_bundle(bundle, key=keys["RS256"][0])
    with pytest.raises(BundleError, match="an HMAC secret needs an explicit algorithm"):
        verify_bundle(bundle, key=b"x" * 64)
    with pytest.raises(BundleError, match="RS256 needs an RSA key, got an EC key"):
        verify_bundle(bundle, key=keys["ES256"][1], alg="RS256")
    with pytest.raises(BundleError, match="EdDSA is not accepted"):
        verify_bundle(bundle, key=keys["RS256"][1], alg="EdDSA")
    (tmp_path / "garbage.pem").write_text("hello")
    with pytest.raises(BundleError, match=f"^{tmp_path}/garbage.pem: not a PEM public key"):
        load_public_key(tmp_path / "garbage.pem")
    with pytest.raises(BundleError, match=f"^{tmp_path}/absent.pem: cannot read private key"):
        load_private_key(tmp_path / "absent.pem")
    assert isinstance(load_public_key(OPA_VECTORS / "test-rsa-public.pem"), rsa.RSAPublicKey)
    assert isinstance(load_private_key(OPA_VECTORS / "test-rsa-private.pem"), rsa.RSAPrivateKey)


# --- real OPA: activation and tamper ---------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_opa_run_activates_the_signed_bundle_and_answers(opa_server, keys, tmp_path, alg):
    path = tmp_path / "signed.tar.gz"
    path.write_bytes(_signed(keys, alg))
    args = ["--bundle", str(path), "--verification-key", _key_arg(keys, alg, tmp_path), "--signing-alg", alg]
    with opa_server(args) as server:
        assert _post_allow(server.url, "web_search") is True
        assert _post_allow(server.url, "rm") is False


@pytest.mark.parametrize("alg", SIGNING_ALGORITHMS)
def test_opa_verifies_every_algorithm_we_sign_with(opa_bin, keys, tmp_path, alg):
    result = _opa_verdict(opa_bin, _signed(keys, alg), tmp_path, _key_arg(keys, alg, tmp_path), alg)
    assert result.returncode == 0, result.stdout


def test_opa_inspect_reads_the_manifest_we_wrote(opa_bin, keys, tmp_path):
    path = tmp_path / "signed.tar.gz"
    path.write_bytes(_signed(keys))
    cmd = [opa_bin, "inspect", "--format", "json", str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout)["manifest"] == Compiled().manifest


@pytest.mark.parametrize("name", [MANIFEST_FILE, DATA_FILE, MODULE, SIGNATURES_FILE])
def test_one_flipped_byte_in_any_file_is_refused_by_opa_and_by_us(opa_bin, keys, tmp_path, name):
    files = _files(_signed(keys))
    files[name] = _flip_last_letter(files[name])
    tampered = write_bundle(files)
    with pytest.raises(BundleVerificationError) as info:
        verify_bundle(read_bundle(tampered, source="b.tar.gz"), key=keys["RS256"][1])
    result = _opa_verdict(opa_bin, tampered, tmp_path, _key_arg(keys, "RS256", tmp_path))
    assert result.returncode != 0
    if name == SIGNATURES_FILE:
        assert str(info.value).startswith("b.tar.gz: signature: invalid (")
        assert "verif" in result.stdout
    else:
        assert str(info.value) == f"b.tar.gz: {name}: digest mismatch"
        assert f"{name}: digest mismatch" in result.stdout


@pytest.mark.parametrize("segment", ["header", "payload", "signature"])
def test_one_flipped_character_in_each_jwt_segment_is_refused(opa_bin, keys, tmp_path, segment):
    files = _files(_signed(keys))
    token = json.loads(files[SIGNATURES_FILE])["signatures"][0]
    parts = token.split(".")
    index = ("header", "payload", "signature").index(segment)
    middle = len(parts[index]) // 2
    parts[index] = parts[index][:middle] + ("A" if parts[index][middle] != "A" else "B") + parts[index][middle + 1 :]
    files[SIGNATURES_FILE] = json.dumps({"signatures": [".".join(parts)]}).encode()
    tampered = write_bundle(files)
    with pytest.raises(BundleVerificationError, match="^b.tar.gz: signature: "):
        verify_bundle(read_bundle(tampered, source="b.tar.gz"), key=keys["RS256"][1])
    assert _opa_verdict(opa_bin, tampered, tmp_path, _key_arg(keys, "RS256", tmp_path)).returncode != 0


def test_opa_run_exits_on_a_tampered_bundle(opa_server, keys, tmp_path):
    files = _files(_signed(keys))
    files[DATA_FILE] = _flip_last_letter(files[DATA_FILE])
    path = tmp_path / "tampered.tar.gz"
    path.write_bytes(write_bundle(files))
    server = opa_server(["--bundle", str(path), "--verification-key", _key_arg(keys, "RS256", tmp_path)])
    server.log_path = tmp_path / "opa.log"
    server.start(wait_healthy=False)
    assert server.proc is not None and server.proc.wait(timeout=60) != 0
    server.stop()
    assert "data.json: digest mismatch" in server.log_path.read_text()


def test_scope_must_match_in_opa_and_here(opa_bin, keys, tmp_path):
    signed = _signed(keys, scope="write")
    key_arg = _key_arg(keys, "RS256", tmp_path)
    assert _opa_verdict(opa_bin, signed, tmp_path, key_arg, "RS256", "--scope", "write").returncode == 0
    assert "scope mismatch" in _opa_verdict(opa_bin, signed, tmp_path, key_arg).stdout
    assert verify_bundle(read_bundle(signed, source="b"), key=keys["RS256"][1], scope="write").scope == "write"


def test_opa_refuses_an_unsigned_bundle_when_given_a_key_and_so_do_we(opa_bin, keys, tmp_path):
    unsigned = build_bundle(Compiled())
    result = _opa_verdict(opa_bin, unsigned, tmp_path, _key_arg(keys, "RS256", tmp_path))
    assert result.returncode != 0 and "missing .signatures.json" in result.stdout
    with pytest.raises(BundleVerificationError, match="not signed"):
        verify_bundle(read_bundle(unsigned, source="b"), key=keys["RS256"][1])


# --- CLI ------------------------------------------------------------------------------------------


def test_cli_verify_prints_the_verified_line(capsys, tmp_path, keys):
    path = tmp_path / "b.tar.gz"
    path.write_bytes(_signed(keys, "ES256"))
    code = main(["bundle", "verify", str(path), "--verification-key", _key_arg(keys, "ES256", tmp_path)])
    out, err = capsys.readouterr()
    assert (code, out, err) == (0, f"Bundle {path} verified: 3 files, revision pol_t@v3-0123456789abcdef\n", "")


def test_cli_verify_hmac_needs_the_algorithm(capsys, tmp_path, keys):
    path = tmp_path / "b.tar.gz"
    path.write_bytes(_signed(keys, "HS256"))
    secret = HMAC_SECRET.decode()
    assert main(["bundle", "verify", str(path), "--verification-key", secret, "--signing-alg", "HS256"]) == 0
    assert main(["bundle", "verify", str(path), "--verification-key", secret]) == 1
    assert "HS256" in capsys.readouterr().err


def test_cli_verify_fails_with_one_line_on_a_tampered_bundle(capsys, tmp_path, keys):
    files = _files(_signed(keys))
    files[DATA_FILE] = _flip_last_letter(files[DATA_FILE])
    path = tmp_path / "b.tar.gz"
    path.write_bytes(write_bundle(files))
    code = main(["bundle", "verify", str(path), "--verification-key", _key_arg(keys, "RS256", tmp_path)])
    out, err = capsys.readouterr()
    assert (code, out, err) == (1, "", f"error: {path}: data.json: digest mismatch\n")


def test_cli_inspect_shows_manifest_files_and_header_without_keys(capsys, tmp_path, keys):
    path = tmp_path / "b.tar.gz"
    path.write_bytes(_signed(keys, scope="write"))
    assert main(["bundle", "inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "Revision:  pol_t@v3-0123456789abcdef" in text and f"Roots:     {WS_ROOT}" in text
    assert "Signature: alg RS256, kid default, scope write (not verified" in text
    assert "BEGIN" not in text and "eyJ" not in text
    assert main(["bundle", "inspect", "--json", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["signature"] == {"alg": "RS256", "kid": "default", "scope": "write", "verified": False}
    assert report["metadata"] == Compiled().manifest["metadata"]
    files = _files(path.read_bytes())
    assert report["files"] == [
        {"name": n, "size": len(c), "sha256": None if n == SIGNATURES_FILE else file_digest(n, c)} for n, c in files.items()
    ]


def test_cli_key_problems_name_the_key_file_but_never_a_secret(capsys, tmp_path, keys):
    path = tmp_path / "b.tar.gz"
    path.write_bytes(_signed(keys))
    private = tmp_path / "private.pem"
    private.write_bytes(keys["RS256"][0])
    assert main(["bundle", "verify", str(path), "--verification-key", str(private)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {private}: expected a public key, got a private key: verifiers never need the private key\n"
    assert main(["bundle", "verify", str(path), "--verification-key", "hunter2-secret"]) == 1
    err = capsys.readouterr().err
    assert "hunter2" not in err and "HS256" in err
    public = _key_arg(keys, "RS256", tmp_path)
    assert main(["bundle", "verify", str(path), "--verification-key", public, "--signing-alg", "EdDSA"]) == 1
    assert "EdDSA is not accepted by OPA" in capsys.readouterr().err


def test_data_of_nested_data_files_is_merged_like_opa_and_conflicts_refused():
    nested = {DATA_FILE: b'{"a": {"x": 1}}', "a/b/data.json": b'{"y": 2}', "c/data.json": b"[1]"}
    assert read_bundle(write_bundle(nested), source="b").data == {"a": {"x": 1, "b": {"y": 2}}, "c": [1]}
    clash = {DATA_FILE: b'{"a": {"b": 1}}', "a/b/data.json": b'{"y": 2}'}
    with pytest.raises(BundleError, match="^b: (a/b/)?data.json: conflicts with other data at /a/b$"):
        read_bundle(write_bundle(clash), source="b").data


def _random_json_text(rng: random.Random, count: int = 400) -> bytes:
    """A JSON object of random keys, strings (escaped or literal) and number literals, as raw text."""
    specials = (0x22, 0x26, 0x2F, 0x3C, 0x3E, 0x5C, 0x7F, 0xE9, 0x2028, 0x2029, 0xFFFD, 0xFFFF)
    pool = [chr(c) for c in (*range(0x20), *specials)]
    pool += ["\ud800", "\udfff", "\U0001F600", "a", "Z", " "]

    def text() -> str:
        length = rng.randrange(12)
        chars = [rng.choice(pool) if rng.random() < 0.7 else chr(rng.randrange(0x20, 0x30000)) for _ in range(length)]
        return "".join(c for c in chars if not 0xD800 <= ord(c) <= 0xDFFF or c in ("\ud800", "\udfff"))

    def encoded(value: str) -> str:
        has_surrogate = any(0xD800 <= ord(c) <= 0xDFFF for c in value)
        return json.dumps(value, ensure_ascii=has_surrogate or rng.random() < 0.5)

    numbers = ["0", "-0", "1.0", "1e3", "1E+05", "-0.0e-0", "0.000100", "12345678901234567890", "3.1415926535897932384"]
    entries = {}
    while len(entries) < count:
        key = encoded(text())
        entries[key] = rng.choice(numbers) if rng.random() < 0.3 else encoded(text())
    return ("{" + ", ".join(f"{k}: {v}" for k, v in entries.items()) + "}").encode("utf-8")


def test_opa_agrees_with_our_canonical_form_on_random_strings_and_numbers(opa_bin, keys, tmp_path):
    rng = random.Random(20240601)
    files = {
        DATA_FILE: b'{"sekuire": {"workspaces": {"ws_t": {"tools": [], "random": ' + _random_json_text(rng) + b"}}}}",
        MANIFEST_FILE: b'{"roots": ["sekuire/workspaces/ws_t"], "metadata": ' + _random_json_text(rng, 50) + b"}",
        MODULE: REGO.encode(),
    }
    files[SIGNATURES_FILE] = BundleSigner(keys["RS256"][0]).sign(files)
    result = _opa_verdict(opa_bin, write_bundle(files), tmp_path, _key_arg(keys, "RS256", tmp_path))
    assert result.returncode == 0, result.stdout
