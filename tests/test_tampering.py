"""Tampering: every single-field change of the vector policy.json, every byte flip of a signed bundle, downgrades.

- policy.json: every member and array element of ``tests/vectors/policy.json``
  is changed (another value of its type, another type, removed; objects also
  get an unknown member), content changes both with and without the attacker
  recomputing ``hash``; each is refused with the error of its class. The only
  fields outside the signature (``status``, by DESIGN.md section 3) cannot
  change what is enforced.
- bundles: every byte of a signed bundle file is flipped; then, below the
  gzip layer, every meaningful byte of every tar header (with the header
  checksum recomputed, as an attacker would) and of the signed files. The
  Python verifier (the one ``EmbeddedEngine.from_bundle`` runs) must refuse each
  one or read byte-identical content; the real OPA judges a sample of each kind
  and must never activate what we refuse.
- downgrades: a client holding version N refuses older, equal-but-different,
  unorderable and other-workspace policies, even validly signed.
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
import subprocess
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey
from sekuire.compiler import (
    BadSignatureError,
    HashMismatchError,
    IntegrityError,
    Keyring,
    PolicyFormatError,
    SekuireError,
    UnknownKeyError,
    UnsignedPolicyError,
    parse_policy,
)
from sekuire.compiler.bundle.tarball import SIGNATURES_FILE, read_bundle
from sekuire.compiler.bundle.verify import verify_bundle
from sekuire.compiler.errors import BundleError, BundleVerificationError
from sekuire.compiler.policy.integrity import content_hash
from sekuire.compiler.rego.compile import compile_policy
from sekuire.runtime import EmbeddedEngine
from sekuire.runtime.client import AsyncPolicyClient, PolicyClient, PolicyRollbackError

from .backend_server import PolicyBackend, signed_policy
from .conftest import VECTOR_POLICY
from .security_support import bundle_key, load_example, signed_bundle

# -- policy.json: single-field mutations ---------------------------------------------------------------

SIGNED_FIELDS = ("/policy_id", "/version", "/workspace_id")  # with the hash, what the signature covers
UNSIGNED_FIELDS = ("/status",)  # the vector's only envelope field outside the signed message


@dataclass(frozen=True)
class Mutation:
    pointer: str
    kind: str  # "value", "type", "remove", "add"
    rehashed: bool  # the attacker recomputed the content hash
    document: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.kind}{'+rehash' if self.rehashed else ''} {self.pointer}"


def _locations(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield (*path, key), child
        yield from _locations(child, (*path, key))


def _other_value(value: Any) -> Any:
    """Another value of the same JSON type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value[:-1] + ("1" if value.endswith("0") else "0") if value else "x"
    if isinstance(value, list):
        return [*value, value[0] if value else "x"]
    return {**value, "extra": True}


def _other_type(value: Any) -> Any:
    if isinstance(value, bool):
        return "true"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return 7
    return None


def _mutations(document: dict[str, Any]) -> Iterator[Mutation]:
    def changed(path: tuple[Any, ...], edit: Callable[[Any, Any], None]) -> dict[str, Any]:
        mutated = copy.deepcopy(document)
        parent = mutated
        for key in path[:-1]:
            parent = parent[key]
        edit(parent, path[-1])
        return mutated

    def edits(child: Any) -> Iterator[tuple[str, Callable[[Any, Any], None]]]:
        yield "value", lambda parent, key: parent.__setitem__(key, _other_value(child))
        yield "type", lambda parent, key: parent.__setitem__(key, _other_type(child))
        yield "remove", lambda parent, key: parent.__delitem__(key)
        if isinstance(child, dict):
            yield "add", lambda parent, key: parent[key].__setitem__("zz_unknown", 1)

    for path, child in _locations(document):
        pointer = "/" + "/".join(str(key) for key in path)
        for kind, edit in edits(child):
            mutated = changed(path, edit)
            yield Mutation(pointer, kind, False, mutated)
            if path[0] == "content" and len(path) > 1:
                rehashed = {**mutated, "hash": content_hash(mutated["content"])}
                yield Mutation(pointer, kind, True, rehashed)


def _expected(mutation: Mutation) -> tuple[type[Exception], ...] | None:
    """The error classes the spec allows for a mutation; None: it must verify (and change nothing enforced)."""
    pointer, kind = mutation.pointer, mutation.kind
    if pointer == "/content" or pointer.startswith("/content/"):
        # Content is covered by the hash, and once the attacker recomputes it, by the signature; a
        # change the model cannot even read (a wrong type, an unknown field) is malformed first.
        return (PolicyFormatError, BadSignatureError if mutation.rehashed else HashMismatchError)
    if kind == "remove" and pointer in ("/signature", "/signing_key_id"):
        return (UnsignedPolicyError,)
    if kind != "value":
        return (PolicyFormatError,)
    return {
        "/hash": (HashMismatchError,),
        "/signature": (BadSignatureError,),
        "/signing_key_id": (UnknownKeyError,),
        **{field: (BadSignatureError,) for field in SIGNED_FIELDS},
    }.get(pointer)


@pytest.fixture(scope="module")
def vector_document() -> dict[str, Any]:
    return json.loads(VECTOR_POLICY.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def trusted(envelope_vectors) -> Keyring:
    key = envelope_vectors["key"]
    return Keyring(keys={key["key_id"]: bytes.fromhex(key["public_key_hex"])})


def test_every_single_field_mutation_of_the_vector_policy_is_refused(vector_document, trusted):
    original = compile_policy(parse_policy(vector_document, trusted))
    outcomes: Counter[str] = Counter()
    accepted: list[str] = []
    for mutation in _mutations(vector_document):
        expected = _expected(mutation)
        try:
            policy = parse_policy(mutation.document, trusted)
        except SekuireError as exc:
            assert expected is not None, f"{mutation}: refused ({exc}) but the field is not signed"
            assert isinstance(exc, expected), f"{mutation}: {type(exc).__name__}: {exc}"
            # Format errors name the field (or one inside it); integrity errors the envelope field that failed.
            assert exc.pointer is not None and "\n" not in str(exc)
            if isinstance(exc, PolicyFormatError):
                assert exc.pointer.startswith(mutation.pointer), f"{mutation}: pointer {exc.pointer}"
            outcomes[type(exc).__name__] += 1
            continue
        assert expected is None, f"{mutation}: verified, expected {[e.__name__ for e in expected]}"
        assert mutation.pointer in UNSIGNED_FIELDS
        # An unsigned field never reaches what is enforced: the same modules, data and revision.
        mutated = compile_policy(policy)
        assert (mutated.modules, mutated.data, mutated.revision) == (original.modules, original.data, original.revision)
        accepted.append(str(mutation))
    assert accepted == ["value /status"]
    # Every class of refusal occurred, and the counts show the sweep was not trivial.
    assert set(outcomes) == {"PolicyFormatError", "HashMismatchError", "BadSignatureError", "UnknownKeyError",
                             "UnsignedPolicyError"}
    assert sum(outcomes.values()) >= 350
    assert outcomes["HashMismatchError"] >= 100 and outcomes["BadSignatureError"] >= 100


def test_each_integrity_failure_has_its_own_class_code_and_message(vector_document, trusted):
    def refused(document: dict[str, Any]) -> SekuireError:
        with pytest.raises(SekuireError) as info:
            parse_policy(document, trusted)
        return info.value

    rehashed = copy.deepcopy(vector_document)
    rehashed["content"]["permissions"]["network"]["allowed_domains"].append("*")
    rehashed["hash"] = content_hash(rehashed["content"])
    errors = {
        "malformed": refused({**vector_document, "version": 1}),
        "hash_mismatch": refused({**vector_document, "hash": "0" * 64}),
        "bad_signature": refused(rehashed),
        "unknown_key": refused({**vector_document, "signing_key_id": "key_rotated"}),
        "unsigned": refused({k: v for k, v in vector_document.items() if k != "signature"}),
    }
    assert {code: error.code for code, error in errors.items()} == {code: code for code in errors}
    assert [type(e) for e in errors.values()] == [PolicyFormatError, HashMismatchError, BadSignatureError,
                                                  UnknownKeyError, UnsignedPolicyError]
    assert len({str(error) for error in errors.values()}) == len(errors)
    assert all(isinstance(e, IntegrityError) for code, e in errors.items() if code != "malformed")


# -- downgrades: a client holding version N ---------------------------------------------------------------

WS = "ws_abc123"


@pytest.fixture()
def backend(envelope_vectors) -> PolicyBackend:
    backend = PolicyBackend()
    backend.set_key("key_test_1", envelope_vectors["key"]["public_key_hex"])
    return backend


ROTATED = SigningKey(b"\x07" * 32)  # a second trusted key: a rollback must fail whoever signed it


def _serve(document: dict[str, Any], seed: bytes, **changes: Any) -> dict[str, Any]:
    key_id = changes.pop("key_id", "key_test_1")
    return signed_policy(document, bytes(ROTATED) if key_id == "key_rotated" else seed, key_id, **changes)


def _more_tools(content: dict[str, Any]) -> None:
    content["agent"]["capabilities"]["allowed_tools"].append("shell")


# (what the backend serves after the client holds v7, the error or None when it is a legitimate successor)
SUCCESSION = [
    ({"version": "6"}, PolicyRollbackError),
    ({"version": "6.99"}, PolicyRollbackError),
    ({"version": "1"}, PolicyRollbackError),
    ({"version": "7", "edit_content": _more_tools}, PolicyRollbackError),
    ({"version": "7.0", "edit_content": _more_tools}, PolicyRollbackError),
    ({"version": "07", "edit_content": _more_tools}, PolicyRollbackError),
    ({"version": "6", "key_id": "key_rotated"}, PolicyRollbackError),
    ({"version": "v8"}, PolicyRollbackError),
    ({"version": "8-rc1"}, PolicyRollbackError),
    ({"version": "7 "}, PolicyRollbackError),
    ({"version": "99", "workspace_id": "ws_other"}, IntegrityError),
    ({"version": "99", "status": "revoked"}, SekuireError),
    ({"version": "7"}, None),  # the very policy held: accepted again
    ({"version": "7.0.1"}, None),
    ({"version": "8"}, None),
    ({"version": "10"}, None),  # numeric order: 10 > 7
    ({"version": "8", "key_id": "key_rotated"}, None),
]


@pytest.mark.parametrize(("changes", "error"), SUCCESSION, ids=[json.dumps(c, default=str) for c, _ in SUCCESSION])
def test_a_client_holding_version_n_refuses_downgrades(url, backend, envelope_vectors, vector_seed, vector_keyring,
                                                      changes, error):
    keyring = Keyring(keys={**vector_keyring.keys, "key_rotated": bytes(ROTATED.verify_key)})
    base = envelope_vectors["valid"]
    held_document = _serve(base, vector_seed, version="7")
    backend.set_policy(held_document)
    with PolicyClient(url, keyring=keyring) as client:
        held = client.fetch_active_policy(WS)
        backend.set_policy(_serve(base, vector_seed, **changes), WS)
        if error is None:
            assert client.fetch_active_policy(WS).version == changes["version"]
            return
        with pytest.raises(error):
            client.fetch_active_policy(WS)
        # The floor stays where it was, even after the cache is invalidated.
        client.invalidate_cache(WS)
        with pytest.raises(error):
            client.fetch_active_policy(WS)
        backend.set_policy(held_document)
        assert client.fetch_active_policy(WS) == held


def test_an_async_client_holding_version_n_refuses_a_validly_signed_older_one(url, backend, envelope_vectors,
                                                                             vector_seed, vector_keyring):
    base = envelope_vectors["valid"]

    async def scenario() -> None:
        async with AsyncPolicyClient(url, keyring=vector_keyring) as client:
            backend.set_policy(_serve(base, vector_seed, version="7"))
            await client.fetch_active_policy(WS)
            backend.set_policy(_serve(base, vector_seed, version="6"))
            with pytest.raises(PolicyRollbackError):
                await client.fetch_active_policy(WS)
            backend.set_policy(_serve(base, vector_seed, version="8", workspace_id="ws_other"), WS)
            with pytest.raises(IntegrityError, match="/workspace_id"):
                await client.fetch_active_policy(WS)

    asyncio.run(scenario())


# -- bundles: single-byte flips -------------------------------------------------------------------------------

OPA_SAMPLE_WORKERS = 4


@dataclass(frozen=True)
class Flip:
    layer: str  # "gzip" (the file) or "tar" (the archive inside it)
    offset: int
    mask: int
    data: bytes  # the whole tampered bundle file
    header: int = -1  # the tar header block the flip is in, if any


class Verdicts:
    """The Python verifier's verdict on tampered bundles, against the original's files."""

    def __init__(self, original: bytes, public_key: bytes) -> None:
        self.public_key = public_key
        self.files = read_bundle(original, source="b").files
        self.refusals: Counter[str] = Counter()
        self.accepted: list[Flip] = []

    def judge(self, flip: Flip) -> bool:
        """True if refused; an accepted flip must leave every signed byte the same."""
        try:
            verified = verify_bundle(read_bundle(flip.data, source="b"), key=self.public_key)
        except BundleError as exc:
            assert "\n" not in str(exc)
            self.refusals[_error_class(exc)] += 1
            return True
        signed = {name: content for name, content in verified.bundle.files.items() if name != SIGNATURES_FILE}
        original = {name: content for name, content in self.files.items() if name != SIGNATURES_FILE}
        assert signed == original, f"{flip.layer} byte {flip.offset} ^ {flip.mask:#x} changed signed content"
        self.accepted.append(flip)
        return False


def _error_class(exc: BundleError) -> str:
    message = exc.message
    for marker in ("digest mismatch", "signature: invalid", "malformed JWT", "listed in signatures",
                   "missing file in signatures", "gzip", "tar", "not UTF-8", "malformed JSON", "invalid file name"):
        if marker in message:
            return f"{type(exc).__name__}: {marker}"
    return f"{type(exc).__name__}: {message.split(':')[0]}"


@pytest.fixture(scope="module")
def bundle() -> bytes:
    return signed_bundle(load_example("coding-assistant"))


def _flipped(data: bytes, offset: int, mask: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1:]


def _with_checksum(tar: bytes, header: int) -> bytes:
    """``tar`` with the checksum of the header block at ``header`` recomputed (what any attacker does)."""
    block = bytearray(tar[header:header + 512])
    block[148:156] = b" " * 8
    block[148:155] = b"%06o\0" % sum(block)
    return tar[:header] + bytes(block) + tar[header + 512:]


# (start, end) byte ranges of a ustar header: mode, uid, gid, mtime, linkname, magic, version, uname, gname, dev.
HARMLESS_HEADER_FIELDS = [(100, 124), (136, 148), (157, 345)]


def _tar_flips(tar: bytes) -> Iterator[tuple[int, int]]:
    """(offset, header offset or -1): the tar bytes worth flipping, with the header to re-checksum."""
    with tarfile.open(fileobj=BytesIO(tar), mode="r:") as archive:
        members = archive.getmembers()
    for member in members:
        header = member.offset_data - 512
        assert header == member.offset, "no PAX extended headers in our bundles"
        # Every byte of the header that carries data, each field's terminator, and the type flag.
        block = tar[header:member.offset_data]
        for index in range(512):
            if not 148 <= index < 156 and (block[index] or index == 156 or (index and block[index - 1])):
                yield header + index, header
        content = tar[member.offset_data:member.offset_data + member.size]
        name = member.name.lstrip("/")
        # .manifest byte by byte; .signatures.json every third byte (3 and 4 are coprime: each position
        # of a base64 quad); the rest by a stride, as any change there is a SHA-256 mismatch like its neighbours'.
        stride = {".manifest": 1, SIGNATURES_FILE: 3, "data.json": 11}.get(name, 211)
        for index in range(0, len(content), stride):
            yield member.offset_data + index, -1
    end = members[-1].offset_data + ((members[-1].size + 511) // 512) * 512
    for offset in range(end, len(tar), 397):  # end-of-archive blocks and padding
        yield offset, -1


def _opa_build(opa_bin: str, directory: Path, public_key: Path, data: bytes) -> dict[str, bytes] | None:
    """The files OPA reads from ``data`` after verifying its signature (``opa build`` writes them); None if refused."""
    directory.mkdir()
    source, out = directory / "bundle.tar.gz", directory / "out.tar.gz"
    source.write_bytes(data)
    command = [opa_bin, "build", "-b", str(source), "--verification-key", str(public_key), "-o", str(out)]
    if subprocess.run(command, capture_output=True, timeout=120, check=False).returncode != 0:
        return None
    with tarfile.open(out, mode="r:gz") as archive:
        # OPA names the modules after the file they came from: keep the name inside the bundle.
        return {m.name.removeprefix(str(source)): archive.extractfile(m).read() for m in archive if m.isfile()}


def _opa_agrees(opa_bin: str, tmp_path: Path, original: bytes, sample: list[tuple[Flip, bool]]) -> Counter[str]:
    """OPA judges every sampled flip: it must refuse, or activate exactly the original's content."""
    public_key = tmp_path / "bundle.pub.pem"
    public_key.write_bytes(bundle_key().public)
    jobs = [original] + [flip.data for flip, _ in sample]
    with ThreadPoolExecutor(OPA_SAMPLE_WORKERS) as pool:
        built = list(pool.map(lambda job: _opa_build(opa_bin, tmp_path / f"opa-{job[0]}", public_key, job[1]),
                              enumerate(jobs)))
    baseline, verdicts = built[0], Counter[str]()
    assert baseline is not None and len(baseline) >= 10
    for (flip, we_refused), files in zip(sample, built[1:]):
        where = f"{flip.layer} byte {flip.offset} ^ {flip.mask:#x}"
        assert files is None or files == baseline, f"OPA activated changed content: {where}"
        verdicts["both refused" if files is None and we_refused else "both accepted" if files is not None and
                 not we_refused else "only OPA refused" if files is None else "only we refused"] += 1
    return verdicts


def test_every_byte_flip_of_a_signed_bundle_file_is_refused_or_harmless(opa_bin, tmp_path, bundle):
    verdicts = Verdicts(bundle, bundle_key().public)
    flips = [Flip("gzip", offset, 0x01, _flipped(bundle, offset, 0x01)) for offset in range(len(bundle))]
    refused = [verdicts.judge(flip) for flip in flips]
    # What passes decompresses to the very same archive (Verdicts.judge checked): the gzip header's
    # flags, mtime and OS bytes, and the rare deflate bit whose change the CRC-checked output does not show.
    assert {4, 5, 6, 7, 9} <= {flip.offset for flip in verdicts.accepted}
    assert len(verdicts.accepted) <= len(bundle) // 100
    assert any("gzip" in name for name in verdicts.refusals)

    # The real OPA: every flip we accept, and a sample of those we refuse from every part of the file.
    # OPA never reads the gzip trailer (its tar reader stops at the end of the archive), so it activates
    # flips of the CRC and the last deflate bytes that we refuse: with the original content, as checked.
    sample = [(f, r) for i, (f, r) in enumerate(zip(flips, refused))
              if not r or i < 12 or i >= len(bundle) - 10 or i % 151 == 0]
    agreement = _opa_agrees(opa_bin, tmp_path, bundle, sample)
    assert agreement["both refused"] >= 60 and agreement["only OPA refused"] == 0


def test_every_meaningful_tar_byte_flip_is_refused_or_harmless(opa_bin, tmp_path, bundle):
    tar = gzip.decompress(bundle)
    verdicts = Verdicts(bundle, bundle_key().public)
    flips: list[Flip] = []
    refused: list[bool] = []
    for offset, header in _tar_flips(tar):
        # 0x80 makes a name byte non-ASCII; elsewhere in a header it only breaks the octal fields again.
        for mask in (0x01, 0x80) if 0 <= offset - header < 100 else (0x01,):
            tampered = _flipped(tar, offset, mask)
            if header >= 0:
                tampered = _with_checksum(tampered, header)
            flip = Flip("tar", offset, mask, gzip.compress(tampered, compresslevel=1, mtime=0), header)
            flips.append(flip)
            refused.append(verdicts.judge(flip))
    assert len(flips) >= 3000
    # What passes changed no signed byte (Verdicts.judge checked), and lies in header fields no reader
    # of a regular file uses: mode, owner ids, mtime, the link name, the ustar magic and version.
    assert verdicts.accepted and all(
        flip.header >= 0 and any(start <= flip.offset - flip.header < end for start, end in HARMLESS_HEADER_FIELDS)
        for flip in verdicts.accepted
    )
    expected_refusals = {"BundleVerificationError: digest mismatch", "BundleVerificationError: signature: invalid",
                         "BundleVerificationError: missing file in signatures", "BundleError: tar"}
    assert expected_refusals <= set(verdicts.refusals), verdicts.refusals

    outcomes = list(zip(flips, refused))
    sample = [item for item in outcomes if not item[1]][::20] + [item for item in outcomes if item[1]][::40]
    agreement = _opa_agrees(opa_bin, tmp_path, bundle, sample)
    assert agreement["both refused"] >= 50


def test_the_embedded_engine_loads_only_the_untampered_bundle(bundle):
    """The runtime's own entry point: from_bundle verifies before it compiles anything."""
    engine = EmbeddedEngine.from_bundle(bundle, verification_key=bundle_key().public)
    engine.close()
    tar = bytearray(gzip.decompress(bundle))
    index = tar.index(b'"web_search":true')
    tar[index + 1] ^= 0x01  # "web_search" -> "veb_search": the data, not the Rego
    with pytest.raises(BundleVerificationError, match="data.json: digest mismatch"):
        EmbeddedEngine.from_bundle(gzip.compress(bytes(tar), mtime=0), verification_key=bundle_key().public)
