"""Generate docs/api.md, the public API of sekuire.compiler and sekuire.runtime, from the code itself.

``python -m tests.apidoc`` rewrites the file; ``--check`` exits 1 when it is
stale (``tests/test_api_doc.py`` runs that check). Every name in a package's
``__all__`` is listed with its signature and the first paragraph of its
docstring; classes list their public methods and properties.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "api.md"
PACKAGES = ("sekuire.compiler", "sekuire.runtime")

__all__ = ["members", "render", "undocumented"]


def _summary(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip()


def _signature(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def members(cls: type) -> list[tuple[str, Any]]:
    """The public methods and properties a class defines itself (inherited ones are documented where they are defined)."""
    found = []
    for name, value in vars(cls).items():
        if name.startswith("_") and name != "__call__":
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if inspect.isfunction(value) or isinstance(value, property):
            found.append((name, value))
    return sorted(found)


def undocumented() -> list[str]:
    """Public names, methods and properties without a docstring."""
    missing = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not inspect.getdoc(obj):
                missing.append(f"{package}.{name}")
            if inspect.isclass(obj):
                for member, value in members(obj):
                    if not (value.__doc__ or "").strip():
                        missing.append(f"{package}.{name}.{member}")
    return missing


def render() -> str:
    """The whole of docs/api.md."""
    lines = [
        "# API reference",
        "",
        "Generated from the code by `python -m tests.apidoc` (a test fails when it is stale).",
        "Everything here is importable from the package named in the heading; other modules are internal.",
        "",
    ]
    for package in PACKAGES:
        module = importlib.import_module(package)
        lines += [f"## `{package}`", "", _summary(module), ""]
        for name in sorted(module.__all__, key=str.lower):
            obj = getattr(module, name)
            if inspect.isclass(obj):
                kind = "exception" if issubclass(obj, BaseException) else "class"
                lines += [f"### {kind} `{name}{_signature(obj)}`", "", _summary(obj), ""]
                for member, value in members(obj):
                    if isinstance(value, property):
                        lines.append(f"- property `{member}`: {_summary(value)}")
                    else:
                        prefix = "async " if inspect.iscoroutinefunction(value) else ""
                        lines.append(f"- {prefix}`{member}{_signature(value)}`: {_summary(value)}")
                lines.append("")
            elif inspect.isfunction(obj):
                prefix = "async " if inspect.iscoroutinefunction(obj) else ""
                lines += [f"### {prefix}function `{name}{_signature(obj)}`", "", _summary(obj), ""]
            else:
                lines += [f"### `{name}`", "", f"`{obj!r}`" if isinstance(obj, (str, int)) else type(obj).__name__, ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.apidoc", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is not current")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET.relative_to(ROOT)} is stale: run `python -m tests.apidoc`", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
