"""Manifest roots: refuse a bundle whose data or Rego packages lie outside its roots, as OPA does.

OPA (``bundle.Manifest.validateAndInjectDefaults``, v1.22) refuses to load a
bundle when

- two roots overlap (one is a segment-wise prefix of the other);
- a module's package path (``package a.b["c"]`` is ``a/b/c``, each segment
  URL-path-escaped as Go's ``url.PathEscape`` does) is not under a root;
- a data value is not under a root. The data tree is walked from the top: a
  node under a root is accepted with everything below it; an object node that
  is not is walked into only when one of its path segments is the first
  segment of some root (OPA's own test, reproduced as it is); any other node
  is refused.

Roots are trimmed of ``/`` on both sides. An absent (or null) ``roots`` is
``[""]``, which covers everything; an empty list covers nothing, so OPA
refuses every bundle that has one (even the data root ``{}`` is refused).

A signed bundle whose roots do not cover its content would load in the
embedded engine while OPA refuses it, or could carry data for another
workspace's root; :func:`check_roots` is called by bundle verification and by
the embedded engine's bundle loading.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ..errors import BundleError
from .tarball import MANIFEST_FILE, Bundle

__all__ = ["bundle_roots", "check_roots", "package_path", "root_contains"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_SPACE = " \t\r"
# Go's url.PathEscape leaves the unreserved characters and these sub-delimiters of a path segment as they are.
_PATH_SEGMENT_SAFE = "-_.~$&+:=@"


def bundle_roots(manifest: Mapping[str, Any] | None) -> list[str]:
    """The manifest's roots as OPA reads them: ``[""]`` when absent or null, each trimmed of ``/``."""
    roots = (manifest or {}).get("roots")
    if roots is None:
        return [""]
    if not isinstance(roots, list) or not all(isinstance(root, str) for root in roots):
        raise BundleError(f"{MANIFEST_FILE}: /roots: expected a list of strings")
    return [root.strip("/") for root in roots]


def root_contains(root: str, path: str) -> bool:
    """True when ``path`` is ``root`` or below it, segment by segment; the root ``""`` contains every path."""
    root_segments, path_segments = root.split("/"), path.split("/")
    if root_segments == [""]:
        return True
    return len(root_segments) <= len(path_segments) and path_segments[: len(root_segments)] == root_segments


def _contained(roots: list[str], path: str) -> bool:
    return any(root_contains(root, path) for root in roots)


def package_path(source: str, name: str) -> str:
    """The slash path of a module's package (``package sekuire.workspaces["ws-1"].lib`` -> ``sekuire/workspaces/ws-1/lib``).

    Only the plain spellings are read (identifiers, ``.``, ``["string"]``); anything
    else is a :class:`BundleError`, so a package we cannot place is refused, never guessed.
    """
    for line in source.splitlines():
        text = line.strip(_SPACE)
        if not text or text.startswith("#"):
            continue
        if not text.startswith("package") or text[len("package"):len("package") + 1] not in (" ", "\t"):
            raise BundleError(f"{name}: the first statement is not a package declaration")
        return "/".join(quote(segment, safe=_PATH_SEGMENT_SAFE) for segment in _ref(text[len("package"):], name))
    raise BundleError(f"{name}: no package declaration")


def _ref(text: str, name: str) -> list[str]:
    rest = text.lstrip(_SPACE)
    match = _IDENT.match(rest)
    if match is None:
        raise BundleError(f"{name}: cannot read the package path")
    segments = [match.group()]
    rest = rest[match.end():]
    while rest and rest[0] not in _SPACE + "#":
        if rest[0] == "." and (match := _IDENT.match(rest, 1)) is not None:
            segments.append(match.group())
            rest = rest[match.end():]
        elif rest[0] == "[" and (match := _STRING.match(rest, 1)) is not None and rest[match.end():match.end() + 1] == "]":
            try:
                segments.append(json.loads(match.group()))
            except ValueError:
                raise BundleError(f"{name}: cannot read the package path") from None
            rest = rest[match.end() + 1:]
        else:
            raise BundleError(f"{name}: cannot read the package path")
    if rest.strip(_SPACE) and not rest.lstrip(_SPACE).startswith("#"):
        raise BundleError(f"{name}: cannot read the package path")
    return segments


def _check_data(roots: list[str], data: Any) -> None:
    # OPA's depth-first walk, with a stack instead of recursion (the data may nest deeply).
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, node = stack.pop()
        trimmed = path.strip("/")
        if _contained(roots, trimmed):
            continue
        if isinstance(node, dict) and any(root_contains(part, root) for part in trimmed.split("/") for root in roots):
            stack.extend((f"{path}/{key}", value) for key, value in node.items())
            continue
        raise BundleError(f"{MANIFEST_FILE}: roots {roots} do not permit data at /{trimmed}")


def check_roots(bundle: Bundle) -> None:
    """Refuse (:class:`BundleError`) a bundle whose roots overlap or do not cover every module and data path."""
    try:
        roots = bundle_roots(bundle.manifest)
        for i, first in enumerate(roots):
            for second in roots[i + 1:]:
                if root_contains(first, second) or root_contains(second, first):
                    raise BundleError(f"{MANIFEST_FILE}: roots {first!r} and {second!r} overlap")
        for name, source in sorted(bundle.modules.items()):
            path = package_path(source, name)
            if not _contained(roots, path):
                raise BundleError(f"{MANIFEST_FILE}: roots {roots} do not permit the package {path!r} of {name}")
        _check_data(roots, bundle.data)
    except BundleError as exc:
        raise exc.with_source(bundle.source) from None
