"""The in-memory compile step: a verified :class:`Policy` -> Rego modules, data and bundle manifest.

The result is what the bundle writer (``bundle.py``) packs and signs, and what the
embedded engine loads directly; nothing here touches the disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..policy.document import Policy
from ..version import __version__
from .extensions import Extension, render_extensions
from .library import render_modules, workspace_package, workspace_root
from .lowering import lower_content

__all__ = ["CompiledPolicy", "compile_policy"]


@dataclass(frozen=True)
class CompiledPolicy:
    """One workspace's policy compiled for OPA (DESIGN.md sections 5 and 6).

    ``modules`` maps bundle paths without a leading slash to Rego source;
    ``data`` is the whole data document from the top
    (``{"sekuire": {"workspaces": {<ws>: {"policy": ...}}}}``); ``manifest`` is
    the bundle's ``.manifest``. ``decision_path`` and ``manifest_path`` are the
    slash-separated data paths of the entry points (``/v1/data/<path>`` in OPA's
    REST API, with the workspace id as it is).
    """

    workspace_id: str
    root: str
    package: str
    modules: dict[str, str] = field(repr=False)
    data: dict[str, Any] = field(repr=False)
    manifest: dict[str, Any]
    decision_path: str
    manifest_path: str
    revision: str


def compile_policy(policy: Policy, extensions: Sequence[Extension] = ()) -> CompiledPolicy:
    """Lower ``policy.content`` into data and render the Rego library for its workspace.

    ``extensions`` (:func:`~.extensions.load_extensions`) are the organisation's rules, rendered under the
    workspace beside the library; the decision adds their violations.

    Raises :class:`~sekuire.compiler.errors.CompileError` (with a JSON pointer) for an
    unusable workspace id or pattern; the caller names the file with ``with_source``.
    """

    workspace_id = policy.workspace_id
    root = workspace_root(workspace_id)
    package = workspace_package(workspace_id)
    lowered = lower_content(policy.content)
    lowered["meta"] = {"policy_id": policy.policy_id, "version": policy.version, "hash": policy.hash}
    return CompiledPolicy(
        workspace_id=workspace_id,
        root=root,
        package=package,
        modules={**render_modules(workspace_id), **render_extensions(tuple(extensions), workspace_id)},
        data={"sekuire": {"workspaces": {workspace_id: {"policy": lowered}}}},
        manifest={
            "revision": policy.revision,
            "roots": [root],
            "rego_version": 1,
            "metadata": {
                "policy_id": policy.policy_id,
                "workspace_id": workspace_id,
                "version": policy.version,
                "hash": policy.hash,
                "compiler_version": __version__,
            },
        },
        decision_path=f"{root}/decision",
        manifest_path=f"{root}/manifest",
        revision=policy.revision,
    )
