"""The Rego library: ``policies/rego/*.rego.j2`` rendered under one workspace's package.

Templates only fill in the package root (gatekeeper's style): every parameter
of a policy lives in the data document that :mod:`sekuire.compiler.lowering`
builds. ``sekuire policy rego --out DIR --tests`` writes the modules and their
``_test.rego`` files for a workspace, for reading, ``opa check`` and ``opa test``.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path

import jinja2

from ..errors import CompileError

__all__ = [
    "MODULE_NAMES",
    "TEST_NAMES",
    "TEST_WORKSPACE",
    "WORKSPACES_ROOT",
    "bundle_name",
    "check_workspace_id",
    "render_modules",
    "render_tests",
    "workspace_package",
    "workspace_root",
    "write_library",
]

#: The library's modules, one per template ``<name>.rego.j2`` (and ``<name>_test.rego.j2``).
MODULE_NAMES = ("apis", "filesystem", "lib", "manifest", "models", "network", "rate_limits", "tools", "workspace")

#: The ``_test.rego.j2`` templates: one per module, and ``explain`` (the workspace's explain entry point).
TEST_NAMES = (*MODULE_NAMES, "explain")

#: Where every workspace lives in OPA's data tree.
WORKSPACES_ROOT = "sekuire/workspaces"

#: The workspace ``__main__`` renders: not a Rego identifier, so the quoted package form is what gets tested.
TEST_WORKSPACE = "ws-rego-test"

_WORKSPACE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Words that cannot be a bare element of a Rego reference (v1 keywords and the root documents).
_RESERVED = frozenset(
    {"as", "contains", "data", "default", "else", "every", "false", "if", "import", "in", "input", "not", "null",
     "package", "some", "true", "with"}
)


def check_workspace_id(workspace_id: object) -> str:
    """A workspace id usable as a bundle root segment, a URL path segment and a Rego string; else CompileError."""
    if not isinstance(workspace_id, str) or not _WORKSPACE_ID.fullmatch(workspace_id):
        raise CompileError(
            f"workspace id {workspace_id!r} cannot name a bundle root: use 1-128 of A-Z a-z 0-9 _ . -, "
            "not starting with . or -",
            pointer="/workspace_id",
        )
    return workspace_id


def workspace_root(workspace_id: str) -> str:
    """The bundle root and data path of a workspace: ``sekuire/workspaces/<ws>``."""
    return f"{WORKSPACES_ROOT}/{check_workspace_id(workspace_id)}"


def bundle_name(workspace_id: str) -> str:
    """The name a workspace's bundle goes by everywhere: OPA's status, ``/health?bundles`` and decision logs, the
    embedded engine's decision logs, ``opa-config`` (``sekuire-<ws>``)."""
    return f"sekuire-{check_workspace_id(workspace_id)}"


def workspace_package(workspace_id: str) -> str:
    """The Rego package of a workspace: ``sekuire.workspaces.ws_1`` or ``sekuire.workspaces["ws-1"]``."""
    check_workspace_id(workspace_id)
    if _IDENTIFIER.fullmatch(workspace_id) and workspace_id not in _RESERVED:
        return f"sekuire.workspaces.{workspace_id}"
    # The id has no quote or backslash (checked above), so it needs no escaping.
    return f'sekuire.workspaces["{workspace_id}"]'


@functools.cache
def _environment() -> jinja2.Environment:
    templates = resources.files("sekuire.policies") / "rego"

    def load(name: str) -> str:
        return (templates / name).read_text(encoding="utf-8")

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _render(workspace_id: str, names: tuple[str, ...], suffix: str) -> dict[str, str]:
    package = workspace_package(workspace_id)
    root = workspace_root(workspace_id)
    env = _environment()
    return {
        f"{root}/{name}{suffix}.rego": env.get_template(f"{name}{suffix}.rego.j2").render(package=package)
        for name in names
    }


def render_modules(workspace_id: str) -> dict[str, str]:
    """Bundle-relative path (``sekuire/workspaces/<ws>/network.rego``) -> Rego source, for every module."""
    return _render(workspace_id, MODULE_NAMES, "")


def render_tests(workspace_id: str) -> dict[str, str]:
    """The ``_test.rego`` files beside the modules (``sekuire/workspaces/<ws>/network_test.rego``)."""
    return _render(workspace_id, TEST_NAMES, "_test")


def write_library(out: str | Path, workspace_id: str = TEST_WORKSPACE, *, tests: bool = True) -> list[Path]:
    """Write the rendered modules (and their ``_test.rego`` files) under ``out``; return the files."""
    out = Path(out)
    sources = render_modules(workspace_id)
    if tests:
        sources.update(render_tests(workspace_id))
    written = []
    for path, source in sources.items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source, encoding="utf-8")
        written.append(target)
    return written
