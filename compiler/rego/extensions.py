"""Organisation rules: Rego extension modules read from directories and rendered under a workspace (DESIGN.md 11).

An extension file declares ``package ext.<name>`` and defines
``deny contains {"rule": "ext.<...>", "message": ...}`` over ``input`` (including
``input.action.args``) and the data under the workspace's root. The compiler
renders it under the workspace (``package <workspace package>.ext.<name>``,
and ``data.ext.`` references become ``data.<workspace package>.ext.``), so the
same file serves every workspace and the bundle's roots cover it. The library's
decision adds every extension violation: extensions can only deny.
``*_test.rego`` files are tests (``sekuire policy rego --tests --extension``), never
bundled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import CompileError
from .library import workspace_package, workspace_root

__all__ = ["Extension", "MAX_EXTENSION_BYTES", "load_extensions", "render_extensions"]

#: Larger extension files are refused (an extension is a few rules, not data).
MAX_EXTENSION_BYTES = 1 << 20
_PACKAGE = re.compile(r"^package[ \t]+ext\.([A-Za-z_][A-Za-z0-9_]*)[ \t]*(?:#.*)?$", re.MULTILINE)
_ANY_PACKAGE = re.compile(r"^package\b.*$", re.MULTILINE)
_DATA_EXT = re.compile(r"\bdata\.ext\.")


@dataclass(frozen=True)
class Extension:
    """One extension file: where it came from, its ``ext.<name>`` package, its source, and whether it is a test."""

    source_path: str
    name: str
    source: str
    test: bool = False

    @property
    def file_name(self) -> str:
        """The file's name in the bundle (``<stem>.rego`` under ``<root>/ext/``)."""
        return Path(self.source_path).name


def _parse(path: Path) -> Extension:
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CompileError(f"cannot read extension: {exc.strerror or exc}", source=where) from None
    if len(raw) > MAX_EXTENSION_BYTES:
        raise CompileError(f"extension larger than {MAX_EXTENSION_BYTES} bytes", source=where)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CompileError(f"extension is not UTF-8 (byte {exc.start})", source=where) from None
    packages = _ANY_PACKAGE.findall(text)
    match = _PACKAGE.search(text)
    if len(packages) != 1 or match is None:
        line = 1 + text[: text.find("package")].count("\n") if "package" in text else 1
        raise CompileError(f"line {line}: an extension declares exactly one `package ext.<name>`", source=where)
    return Extension(where, match.group(1), text, test=path.name.endswith("_test.rego"))


def load_extensions(directories: list[str | Path] | tuple[str | Path, ...]) -> list[Extension]:
    """Every ``*.rego`` file of ``directories`` (sorted; tests included, marked), or CompileError naming the file."""
    found: list[Extension] = []
    names: dict[str, str] = {}
    for directory in directories:
        folder = Path(directory)
        if not folder.is_dir():
            raise CompileError("not a directory of extension modules", source=str(folder))
        for path in sorted(folder.glob("*.rego")):
            extension = _parse(path)
            if extension.file_name in names:
                raise CompileError(f"extension file name also used by {names[extension.file_name]}", source=str(path))
            names[extension.file_name] = str(path)
            found.append(extension)
    return found


def render_extensions(extensions: list[Extension] | tuple[Extension, ...], workspace_id: str, *,
                      tests: bool = False) -> dict[str, str]:
    """Bundle path (``<root>/ext/<file>``) -> the module rendered under the workspace; tests only when asked."""
    package = workspace_package(workspace_id)
    root = workspace_root(workspace_id)
    rendered: dict[str, str] = {}
    for extension in extensions:
        if extension.test and not tests:
            continue
        text = _PACKAGE.sub(lambda m: f"package {package}.ext.{m.group(1)}", extension.source, count=1)
        text = _DATA_EXT.sub(f"data.{package}.ext.", text)
        rendered[f"{root}/ext/{extension.file_name}"] = text
    return rendered
