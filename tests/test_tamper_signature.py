"""Tampering that reaches the signature: every byte of every signed member flipped inside the tar, verdicts by class.

The byte flips of ``test_tampering`` go through gzip, whose CRC refuses most of
them before the signature is consulted. Here the attacker works below gzip: a
member's content is changed, the archive is rebuilt with valid tar headers and
a valid gzip stream, and the only defence left is the signature. Every byte of
every Rego module, of ``data.json``, of ``.manifest`` and of
``.signatures.json`` is flipped; each tampered bundle must be refused, and for
the right reason: a digest mismatch for a changed Rego module (nothing else
stands between it and evaluation), a digest mismatch or a refusal to hash for
the JSON files, a signature failure for the JWT. With the digest comparison
disabled in the verifier, these tests fail.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import tarfile
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor

import pytest
from sekuire.compiler.bundle.tarball import MANIFEST_FILE, SIGNATURES_FILE, Bundle, read_bundle
from sekuire.compiler.bundle.verify import verify_bundle
from sekuire.compiler.errors import BundleError, BundleVerificationError

from .security_support import bundle_key, load_example, signed_bundle

#: What each kind of member may be refused for; anything else (or an acceptance) fails the test.
ALLOWED_REASONS = {
    "rego": {"digest mismatch"},
    "json": {"digest mismatch", "cannot be hashed", "unreadable JSON"},
    "signatures": {"signature refused", "unreadable JSON"},
}
_WORKERS = 2
_state: dict[str, object] = {}


def _kind(name: str) -> str:
    if name == SIGNATURES_FILE:
        return "signatures"
    return "rego" if name.endswith(".rego") else "json"


def _pack(files: Mapping[str, bytes]) -> bytes:
    """A well-formed bundle of ``files`` (valid tar headers, valid gzip): what an attacker rebuilds."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo("/" + name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(buffer.getvalue(), compresslevel=1, mtime=0)


def _reason(exc: BundleError) -> str:
    for marker in ("digest mismatch", "cannot be hashed"):
        if marker in exc.message:
            return marker
    if isinstance(exc, BundleVerificationError) and (exc.message.startswith("signature") or SIGNATURES_FILE in exc.message):
        return "signature refused"  # the JWT: its encoding, header, algorithm, claims or signature bytes
    if any(marker in exc.message for marker in ("malformed JSON", "not UTF-8", "duplicate key")):
        return "unreadable JSON"  # the reader refuses it before the verifier sees it
    return f"{type(exc).__name__}: {exc.message}"


def _init(original: bytes, key: bytes) -> None:
    _state["bundle"] = read_bundle(original, source="b")
    _state["key"] = key


def _judge(job: tuple[str, int]) -> tuple[str, str]:
    """(member kind, refusal reason or "ACCEPTED") for the bundle with byte ``offset`` of member ``name`` flipped."""
    name, offset = job
    original: Bundle = _state["bundle"]  # type: ignore[assignment]
    content = bytearray(original.files[name])
    content[offset] ^= 0x01
    files = {**original.files, name: bytes(content)}
    try:
        if _kind(name) == "rego":
            # Rego modules are not parsed by the reader: the in-memory bundle is exactly what a rebuilt tar reads as.
            tampered = dataclasses.replace(original, files=files)
        else:
            tampered = read_bundle(_pack(files), source="b")
        verify_bundle(tampered, key=_state["key"])  # type: ignore[arg-type]
    except BundleError as exc:
        return _kind(name), _reason(exc)
    return _kind(name), "ACCEPTED"


def _jobs(files: Mapping[str, bytes]) -> Iterator[tuple[str, int]]:
    for name, content in sorted(files.items()):
        for offset in range(len(content)):
            yield name, offset


@pytest.fixture(scope="module")
def verdicts() -> Counter[tuple[str, str]]:
    original = signed_bundle(load_example("coding-assistant"))
    files = read_bundle(original, source="b").files
    # The rebuilt but untampered bundle verifies: the refusals below are the flips', not the packing's.
    verify_bundle(read_bundle(_pack(files), source="b"), key=bundle_key().public)
    jobs = list(_jobs(files))
    with ProcessPoolExecutor(_WORKERS, initializer=_init, initargs=(original, bundle_key().public)) as pool:
        return Counter(pool.map(_judge, jobs, chunksize=256))


@pytest.mark.parametrize("kind", sorted(ALLOWED_REASONS))
def test_every_flipped_byte_of_a_signed_member_is_refused_for_its_reason(verdicts, kind):
    seen = {reason: count for (k, reason), count in verdicts.items() if k == kind}
    assert seen, f"no {kind} member was flipped"
    assert "ACCEPTED" not in seen, f"{seen['ACCEPTED']} tampered {kind} byte(s) verified"
    assert set(seen) <= ALLOWED_REASONS[kind], seen


def test_every_rego_byte_is_covered(verdicts):
    original = read_bundle(signed_bundle(load_example("coding-assistant")), source="b")
    rego_bytes = sum(len(content) for name, content in original.files.items() if name.endswith(".rego"))
    assert rego_bytes > 10_000
    assert sum(count for (kind, _), count in verdicts.items() if kind == "rego") == rego_bytes
    assert MANIFEST_FILE in original.files
