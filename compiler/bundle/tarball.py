"""OPA bundles: a deterministic writer and a bounded, strict reader.

A bundle is a gzipped tar of regular files (DESIGN.md section 6). The writer
produces what ``opa build`` produces, minus its non-determinism: member names
sorted and rooted at ``/``, mode 0600, mtime/uid/gid zero, empty owner names,
gzip header mtime zero and no file name, so the same files give the same bytes.

The reader refuses, with a one-line :class:`BundleError`, anything OPA could
read differently from us or that could exhaust memory: archives over the size
limits (gzip bombs included), non-regular members, names that are absolute or
contain ``.``/``..``/empty segments, duplicate names, and names OPA treats
specially wherever they appear (``*signatures.json``, ``*.manifest``), YAML data
and delta-bundle patches.

Signing and verification live beside it in :mod:`.signing` and :mod:`.verify`.
"""

from __future__ import annotations

import gzip
import io
import os
import posixpath
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import BundleError, PolicyFormatError
from ..files import read_limited
from ..policy.canonical import canonical_json, strict_loads

__all__ = [
    "Bundle",
    "BundleLimits",
    "CompiledBundleSource",
    "DATA_FILE",
    "DEFAULT_LIMITS",
    "FILE_MODE",
    "FileSigner",
    "MANIFEST_FILE",
    "REGO_SUFFIX",
    "SIGNATURES_FILE",
    "build_bundle",
    "check_member_name",
    "load_bundle",
    "read_bundle",
    "write_bundle",
]

MANIFEST_FILE = ".manifest"
DATA_FILE = "data.json"
SIGNATURES_FILE = ".signatures.json"
REGO_SUFFIX = ".rego"
#: What ``opa build`` writes; OPA ignores the mode when it reads.
FILE_MODE = 0o600

# OPA takes any path ending in these as its signatures file or manifest, and
# these basenames as YAML data or a delta patch: ambiguous or unsupported here.
_OPA_SIGNATURES_SUFFIX = "signatures.json"
_UNSUPPORTED_BASENAMES = {"data.yaml": "YAML data files", "data.yml": "YAML data files", "patch.json": "delta bundles"}
_MAX_NAME_LENGTH = 4096
# A tar member costs a 512-byte header, padding, and at most a PAX header of its own.
_TAR_OVERHEAD_PER_MEMBER = 2048


@dataclass(frozen=True)
class BundleLimits:
    """Hard limits of :func:`read_bundle`; generous for policy bundles, small for gzip bombs."""

    max_compressed_bytes: int = 32 << 20
    max_total_bytes: int = 64 << 20
    max_file_bytes: int = 32 << 20
    max_files: int = 1000


DEFAULT_LIMITS = BundleLimits()


class FileSigner(Protocol):
    """What :func:`build_bundle` needs of a signer (:class:`~.signing.BundleSigner` is one)."""

    def sign(self, files: Mapping[str, bytes]) -> bytes:
        """The ``.signatures.json`` content for a bundle made of ``files``."""
        ...


class CompiledBundleSource(Protocol):
    """What :func:`build_bundle` takes (``compile_policy`` returns one)."""

    @property
    def modules(self) -> Mapping[str, str]: ...  # bundle path (no leading '/') -> Rego source

    @property
    def data(self) -> Mapping[str, Any]: ...  # the full data document, written as the root data.json

    @property
    def manifest(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Bundle:
    """The files of a bundle by name (no leading ``/``), with its parsed manifest and signatures."""

    files: dict[str, bytes]
    manifest: dict[str, Any] | None = None
    signatures: dict[str, Any] | None = None
    source: str = "<bundle>"

    @property
    def revision(self) -> str:
        """The manifest's revision, or "" when it names none."""
        revision = (self.manifest or {}).get("revision")
        return revision if isinstance(revision, str) else ""

    @property
    def roots(self) -> list[str] | None:
        """The manifest roots; None means OPA's default, the whole data tree."""
        return (self.manifest or {}).get("roots")

    @property
    def signed(self) -> bool:
        """Whether the bundle carries a ``.signatures.json`` (not whether it verifies)."""
        return self.signatures is not None

    @property
    def modules(self) -> dict[str, str]:
        """Rego sources by file name."""
        modules: dict[str, str] = {}
        for name, content in self.files.items():
            if name.endswith(REGO_SUFFIX):
                try:
                    modules[name] = content.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise BundleError(f"{name}: not UTF-8 at byte {exc.start}", source=self.source) from None
        return modules

    @property
    def data(self) -> dict[str, Any]:
        """The data document, each ``data.json`` placed under its directory as OPA does."""
        data: dict[str, Any] = {}
        for name, content in self.files.items():
            if posixpath.basename(name) != DATA_FILE:
                continue
            try:
                value = strict_loads(content)
            except PolicyFormatError as exc:
                raise BundleError(f"{name}: {exc.message}", source=self.source) from None
            for key in reversed([part for part in posixpath.dirname(name).split("/") if part]):
                value = {key: value}
            if not isinstance(value, dict):
                raise BundleError(f"{name}: the data document at the root must be an object", source=self.source)
            _merge(data, value, name=name, source=self.source)
        return data


def check_member_name(name: str) -> str:
    """Return a bundle file name if it is safe and unambiguous; raise BundleError otherwise."""
    if not name or len(name) > _MAX_NAME_LENGTH:
        raise BundleError(f"invalid file name {name[:80]!r}: empty or too long")
    if any(ch in name for ch in "\\\x00") or not name.isprintable():
        raise BundleError(f"invalid file name {name!r}: control characters or backslashes")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise BundleError(f"invalid file name {name!r}: not UTF-8") from None
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise BundleError(f"invalid file name {name!r}: absolute, or with an empty, '.' or '..' segment")
    if name != SIGNATURES_FILE and name.endswith(_OPA_SIGNATURES_SUFFIX):
        raise BundleError(f"invalid file name {name!r}: OPA would read it as the bundle's signatures")
    if name != MANIFEST_FILE and name.endswith(MANIFEST_FILE):
        raise BundleError(f"invalid file name {name!r}: OPA would read it as the bundle's manifest")
    unsupported = _UNSUPPORTED_BASENAMES.get(posixpath.basename(name))
    if unsupported:
        raise BundleError(f"invalid file name {name!r}: {unsupported} are not supported")
    return name


def write_bundle(files: Mapping[str, bytes]) -> bytes:
    """A gzipped tar of ``files`` (names without the leading ``/``); same files, same bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            content = files[name]
            if not isinstance(content, bytes):
                raise BundleError(f"{name}: content must be bytes, not {type(content).__name__}")
            info = tarfile.TarInfo("/" + check_member_name(name))
            info.size = len(content)
            info.mode = FILE_MODE
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(content))
    # gzip.compress with mtime=0 writes no file name and a zero timestamp.
    return gzip.compress(buffer.getvalue(), compresslevel=9, mtime=0)


def build_bundle(compiled: CompiledBundleSource, *, signer: FileSigner | None = None) -> bytes:
    """The bundle of a compiled policy: ``.manifest``, ``data.json`` at the root, the modules; signed if asked."""
    files: dict[str, bytes] = {}
    for path, source in compiled.modules.items():
        if not path.endswith(REGO_SUFFIX):
            raise BundleError(f"module {path!r}: a Rego module's file name must end in {REGO_SUFFIX}")
        files[check_member_name(path)] = source.encode("utf-8")
    for name, document in ((DATA_FILE, compiled.data), (MANIFEST_FILE, compiled.manifest)):
        if name in files:
            raise BundleError(f"module {name!r} collides with the bundle's own {name}")
        try:
            files[name] = canonical_json(document)
        except PolicyFormatError as exc:
            raise BundleError(f"{name}: {exc.message}") from None
    if signer is not None:
        files[SIGNATURES_FILE] = signer.sign(files)
    return write_bundle(files)


def read_bundle(data: bytes, *, source: str, limits: BundleLimits = DEFAULT_LIMITS) -> Bundle:
    """Parse a gzipped tar bundle within ``limits``; BundleError (naming ``source``) on anything unsafe."""
    try:
        return _read(data, limits, source)
    except BundleError as exc:
        raise exc.with_source(source) from None


def load_bundle(path: str | os.PathLike[str], *, limits: BundleLimits = DEFAULT_LIMITS) -> Bundle:
    """Read a bundle file (bounded by ``limits.max_compressed_bytes``)."""
    source = os.fspath(path)
    try:
        data = read_limited(path, limits.max_compressed_bytes)
    except OSError as exc:
        raise BundleError(f"cannot read: {exc.strerror or exc}", source=source) from None
    return read_bundle(data, source=source, limits=limits)


def _read(data: bytes, limits: BundleLimits, source: str) -> Bundle:
    if len(data) > limits.max_compressed_bytes:
        raise BundleError(f"compressed size {len(data)} exceeds the {limits.max_compressed_bytes}-byte limit")
    tar_cap = limits.max_total_bytes + (limits.max_files + 2) * _TAR_OVERHEAD_PER_MEMBER
    tar_bytes = _gunzip(data, tar_cap)
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            for member in tar:
                if member.isdir():
                    continue  # carries no content; OPA skips directories too
                if len(files) >= limits.max_files:
                    raise BundleError(f"more than {limits.max_files} files")
                name = _member_name(member)
                if member.size > limits.max_file_bytes:
                    raise BundleError(f"{name}: size {member.size} exceeds the {limits.max_file_bytes}-byte limit")
                total += member.size
                if total > limits.max_total_bytes:
                    raise BundleError(f"total size exceeds the {limits.max_total_bytes}-byte limit")
                if name in files:
                    raise BundleError(f"{name}: duplicate file")
                extracted = tar.extractfile(member)
                content = extracted.read() if extracted is not None else b""
                if len(content) != member.size:
                    raise BundleError(f"{name}: truncated tar member")
                files[name] = content
            end = tar.offset
    except (tarfile.TarError, EOFError, ValueError, UnicodeError) as exc:
        raise BundleError(f"not a valid tar archive: {exc}") from None
    # tarfile stops at the first zero or invalid header block; OPA's reader
    # fails on data after it, and no member may hide there from us.
    if tar_bytes[end:].strip(b"\0"):
        raise BundleError("data after the end of the tar archive")
    files = dict(sorted(files.items()))
    return Bundle(
        files=files,
        manifest=_json_object(files, MANIFEST_FILE),
        signatures=_json_object(files, SIGNATURES_FILE),
        source=source,
    )


def _gunzip(data: bytes, cap: int) -> bytes:
    """Decompress every gzip member of ``data`` (as Go's reader does), never producing more than ``cap`` bytes."""
    if not data.startswith(b"\x1f\x8b"):
        raise BundleError("not a gzip file")
    out = bytearray()
    pending = data
    try:
        while pending:
            decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            while not decompressor.eof:
                chunk = decompressor.decompress(pending, cap + 1 - len(out))
                tail = decompressor.unconsumed_tail
                if not chunk and len(tail) == len(pending) and not decompressor.eof:
                    raise BundleError("truncated gzip stream")
                out += chunk
                if len(out) > cap:
                    raise BundleError(f"uncompressed size exceeds the {cap}-byte limit")
                pending = tail
            pending = decompressor.unused_data
    except zlib.error as exc:
        raise BundleError(f"corrupt gzip stream: {exc}") from None
    return bytes(out)


def _member_name(member: tarfile.TarInfo) -> str:
    raw = member.name
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.sparse is not None:
        kind = "symlink" if member.issym() else "hard link" if member.islnk() else f"type {member.type!r}"
        raise BundleError(f"{raw!r}: not a regular file ({kind})")
    # OPA strips one leading '/' (``opa build`` writes '/data.json'); the signature names the rest.
    return check_member_name(raw[1:] if raw.startswith("/") else raw)


def _json_object(files: Mapping[str, bytes], name: str) -> dict[str, Any] | None:
    content = files.get(name)
    if content is None:
        return None
    try:
        value = strict_loads(content)
    except PolicyFormatError as exc:
        raise BundleError(f"{name}: {exc.message}") from None
    if not isinstance(value, dict):
        raise BundleError(f"{name}: expected a JSON object")
    if name == MANIFEST_FILE:
        _check_manifest(value)
    return value


def _check_manifest(manifest: dict[str, Any]) -> None:
    expected = {"revision": str, "roots": list, "metadata": dict, "rego_version": int}
    for key, kind in expected.items():
        value = manifest.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise BundleError(f"{MANIFEST_FILE}: /{key}: expected {kind.__name__}")
    roots = manifest.get("roots") or []
    if not all(isinstance(root, str) for root in roots):
        raise BundleError(f"{MANIFEST_FILE}: /roots: expected a list of strings")


def _merge(target: dict[str, Any], incoming: dict[str, Any], *, name: str, source: str, path: str = "") -> None:
    """Deep-merge like OPA's bundle loader: objects merge, any other overlap is a conflict."""
    for key, value in incoming.items():
        here = f"{path}/{key}"
        if key not in target:
            target[key] = value
        elif isinstance(target[key], dict) and isinstance(value, dict):
            _merge(target[key], value, name=name, source=source, path=here)
        else:
            raise BundleError(f"{name}: conflicts with other data at {here}", source=source)
