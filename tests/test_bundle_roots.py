"""Manifest roots: a validly signed bundle whose roots do not cover its content is refused, as the real OPA does.

Every bundle below is signed with a key both sides trust, so the only thing that
can refuse it is the roots check. Each is given to ``opa build -b BUNDLE
--verification-key`` (the reader ``opa run --bundle`` uses) and to
``verify_bundle``; both must accept it or both refuse it. The CLI and the
embedded engine refuse the same bundles.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sekuire.compiler.bundle.roots import bundle_roots, check_roots, package_path, root_contains
from sekuire.compiler.bundle.signing import BundleSigner
from sekuire.compiler.bundle.tarball import build_bundle, read_bundle, write_bundle
from sekuire.compiler.bundle.verify import verify_bundle
from sekuire.compiler.cli import main
from sekuire.compiler.errors import BundleError, BundleVerificationError
from sekuire.runtime import EmbeddedEngine

from .security_support import bundle_key, load_example, signed_bundle

WS = "sekuire/workspaces/ws_t"
REGO = "package sekuire.workspaces.ws_t\n\ndefault allow := false\n\nallow if input.tool in data.sekuire.workspaces.ws_t.tools\n"
ABSENT = object()


@dataclass
class Source:
    """What build_bundle reads: modules, data and a manifest whose roots the case chooses."""

    roots: Any = field(default_factory=lambda: [WS])
    modules: dict[str, str] = field(default_factory=lambda: {f"{WS}/policy.rego": REGO})
    data: dict[str, Any] = field(default_factory=lambda: {"sekuire": {"workspaces": {"ws_t": {"tools": ["calc"]}}}})

    @property
    def manifest(self) -> dict[str, Any]:
        manifest: dict[str, Any] = {"revision": "r1", "rego_version": 1}
        if self.roots is not ABSENT:
            manifest["roots"] = self.roots
        return manifest


def _with(data: dict[str, Any]) -> dict[str, Any]:
    return {"sekuire": {"workspaces": {"ws_t": {"tools": ["calc"]}, **data}}}


CASES = [
    ("exact root", Source(), None),
    ("absent roots cover everything", Source(roots=ABSENT), None),
    ("the empty root covers everything", Source(roots=[""]), None),
    ("a wider root", Source(roots=["sekuire"]), None),
    ("slashes around a root are trimmed", Source(roots=[f"/{WS}/"]), None),
    ("a second root for more data", Source(roots=[WS, "other"], data={**_with({}), "other": {"x": 1}}), None),
    ("a quoted package segment", Source(modules={f"{WS}/p.rego": REGO.replace(".ws_t\n", '["ws_t"]\n', 1)}), None),
    # OPA walks into an object outside the roots when one of its path segments starts a root: an empty one passes.
    ("OPA's walk into an empty object", Source(data=_with({"x": {"sekuire": {}}})), None),
    ("no roots at all", Source(roots=[]), "do not permit"),
    ("another workspace's root", Source(roots=["sekuire/workspaces/other"]), "do not permit"),
    ("a root that is a prefix only by characters", Source(roots=["sekuire/workspaces/ws"]), "do not permit"),
    ("data for another workspace", Source(data=_with({"ws_other": {"tools": ["shell"]}})), "do not permit"),
    ("data beside the workspaces", Source(data={**_with({}), "sekuire_x": 1}), "do not permit"),
    ("an empty object outside every root", Source(data={**_with({}), "other": {}}), "do not permit"),
    ("a package outside the roots",
     Source(roots=[WS, "other"], modules={f"{WS}/p.rego": REGO, "x.rego": "package sekuire.workspaces.ws_u\n"}),
     "do not permit"),
    ("overlapping roots", Source(roots=["sekuire", WS]), "overlap"),
]


def _signed(source: Source) -> bytes:
    return build_bundle(source, signer=BundleSigner(bundle_key().private))


def _opa_verdict(opa: str, bundle: bytes, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path, public = tmp_path / "candidate.tar.gz", tmp_path / "pub.pem"
    path.write_bytes(bundle)
    public.write_bytes(bundle_key().public)
    return subprocess.run(
        [opa, "build", "-b", str(path), "--verification-key", str(public), "-o", str(tmp_path / "out.tar.gz")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60, check=False,
    )


@pytest.mark.parametrize(("note", "source", "refusal"), CASES, ids=[case[0] for case in CASES])
def test_we_accept_and_refuse_the_same_signed_bundles_as_opa(opa_bin, tmp_path, note, source, refusal):
    signed = _signed(source)
    opa = _opa_verdict(opa_bin, signed, tmp_path)
    bundle = read_bundle(signed, source="b.tar.gz")
    if refusal is None:
        assert opa.returncode == 0, opa.stdout
        assert verify_bundle(bundle, key=bundle_key().public).files
        return
    assert opa.returncode != 0 and refusal in opa.stdout, opa.stdout
    with pytest.raises(BundleVerificationError, match=refusal) as info:
        verify_bundle(bundle, key=bundle_key().public)
    assert "\n" not in str(info.value) and str(info.value).startswith("b.tar.gz: ")


def _uncovered_example_bundle() -> bytes:
    """The coding-assistant bundle, validly re-signed, with roots naming another workspace."""
    files = dict(read_bundle(signed_bundle(load_example("coding-assistant")), source="b").files)
    del files[".signatures.json"]
    files[".manifest"] = files[".manifest"].replace(b"sekuire/workspaces/ws_abc123", b"sekuire/workspaces/ws_other")
    return build_bundle(_Files(files), signer=BundleSigner(bundle_key().private))


@dataclass
class _Files:
    """Re-sign already written files: build_bundle with modules, data and manifest taken from them."""

    files: dict[str, bytes]

    @property
    def modules(self) -> dict[str, str]:
        return {name: content.decode() for name, content in self.files.items() if name.endswith(".rego")}

    @property
    def data(self) -> Any:
        return json.loads(self.files["data.json"])

    @property
    def manifest(self) -> Any:
        return json.loads(self.files[".manifest"])


def test_cli_verify_and_the_embedded_engine_refuse_a_signed_bundle_with_uncovering_roots(opa_bin, tmp_path, capsys):
    bundle = _uncovered_example_bundle()
    path, public = tmp_path / "b.tar.gz", tmp_path / "pub.pem"
    path.write_bytes(bundle)
    public.write_bytes(bundle_key().public)
    assert "do not permit" in _opa_verdict(opa_bin, bundle, tmp_path).stdout

    assert main(["bundle", "verify", str(path), "--verification-key", str(public)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"error: {path}: .manifest: roots ['sekuire/workspaces/ws_other'] do not permit")
    assert err.count("\n") == 1

    with pytest.raises(BundleVerificationError, match="do not permit"):
        EmbeddedEngine.from_bundle(path, verification_key=public)
    unsigned = dict(read_bundle(bundle, source="b").files)
    del unsigned[".signatures.json"]
    with pytest.raises(BundleError, match="do not permit"):
        EmbeddedEngine.from_bundle(build_bundle(_Files(unsigned)), allow_unsigned=True)
    # The same bundle with its true roots loads (the refusal above is the roots', not the signature's).
    EmbeddedEngine.from_bundle(signed_bundle(load_example("coding-assistant")), verification_key=bundle_key().public).close()


@pytest.mark.parametrize(
    ("source", "path"),
    [
        ("package a.b.c\n", "a/b/c"),
        ("# METADATA\n# title: x\npackage a.b # comment\n", "a/b"),
        ('package sekuire.workspaces["ws-1"].lib\n', "sekuire/workspaces/ws-1/lib"),
        ('package x["a b/c;d"]\n', "x/a%20b%2Fc%3Bd"),
        ('package x["$&+:=@~"]\n', "x/$&+:=@~"),
        ('package\tx["\\u00e9"]\n', "x/%C3%A9"),
    ],
)
def test_package_path_is_opas_escaped_ref(source, path):
    assert package_path(source, "m.rego") == path


_NO_PACKAGE, _NOT_FIRST, _UNREADABLE = "no package declaration", "the first statement is not a package declaration", \
    "cannot read the package path"


@pytest.mark.parametrize(("source", "message"), [
    ("", _NO_PACKAGE), ("# only a comment\n", _NO_PACKAGE), ("import rego.v1\npackage a\n", _NOT_FIRST),
    ("package\n", _NOT_FIRST), ("packagea.b\n", _NOT_FIRST), ("package a.\n", _UNREADABLE),
    ("package a[1]\n", _UNREADABLE), ("package a[`x`]\n", _UNREADABLE), ("package a.b c\n", _UNREADABLE),
    ('package a["x"\n', _UNREADABLE), ('package a["\\x"]\n', _UNREADABLE), ("package 1a\n", _UNREADABLE),
])
def test_a_package_we_cannot_place_is_refused_saying_why(source, message):
    with pytest.raises(BundleError) as info:
        package_path(source, "m.rego")
    assert info.value.message == f"m.rego: {message}"


def test_roots_refusals_word_for_word():
    def refusal(files: dict[str, bytes]) -> str:
        with pytest.raises(BundleError) as info:
            check_roots(read_bundle(write_bundle(files), source="r"))
        return info.value.message

    assert refusal({".manifest": b'{"roots":["a","a/b"]}'}) == ".manifest: roots 'a' and 'a/b' overlap"
    assert refusal({".manifest": b'{"roots":["a"]}', "data.json": b'{"b": 1}'}) == \
        ".manifest: roots ['a'] do not permit data at /b"
    # Names are read as OPA reads them: an upper-case X is an ordinary character of a package or data path.
    assert package_path("package aXb.X\n", "m.rego") == "aXb/X"
    check_roots(read_bundle(write_bundle({".manifest": b'{"roots":["X"]}', "data.json": b'{"X": 1}'}), source="r"))


def test_roots_are_read_as_opa_reads_them():
    assert bundle_roots(None) == bundle_roots({}) == bundle_roots({"roots": None}) == [""]
    assert bundle_roots({"roots": []}) == []
    assert bundle_roots({"roots": ["/a/b/", "c"]}) == ["a/b", "c"]
    assert root_contains("", "anything/at/all") and root_contains("a/b", "a/b") and root_contains("a/b", "a/b/c")
    assert not root_contains("a/b", "a/bc") and not root_contains("a/b", "a")


def test_check_roots_names_the_bundle():
    bundle = read_bundle(build_bundle(Source(roots=["elsewhere"])), source="named.tar.gz")
    with pytest.raises(BundleError) as info:
        check_roots(bundle)
    assert str(info.value).startswith("named.tar.gz: .manifest: roots ['elsewhere'] do not permit the package")


def test_deeply_nested_data_outside_the_roots_is_a_bundle_error_not_a_crash():
    depth = 900  # as deep as the JSON reader goes; the walk itself keeps no Python stack
    files = dict(read_bundle(build_bundle(Source()), source="d").files)
    files["sekuire/zz/data.json"] = ('{"sekuire":' * depth + '{"x": 1}' + "}" * depth).encode()
    with pytest.raises(BundleError, match="do not permit data at /sekuire/zz/sekuire/sekuire/"):
        check_roots(read_bundle(write_bundle(files), source="d"))
