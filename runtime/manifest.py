"""The agent manifest (``sekuire.yml``) and the input of the policy's ``manifest`` entry point.

Format::

    agent:
      name: support-bot
      llm: {provider: openai, model: gpt-4o, api_key_env: OPENAI_API_KEY, base_url: https://...}
      tools: tools.json          # a JSON/YAML file beside the manifest, or an inline list
    capabilities:
      provides: [github:create_issue]
    logging:
      enabled: true              # declares audit logging (policies with require_audit_logging warn without it)

A tools file is a list or ``{"tools": [...]}`` of ``{"name": ...}`` objects or
plain names. Fields the runtime does not use are tolerated (the manifest is the
developer's file and carries more than the policy reads); the fields it does use
are checked, and every error names the file and the JSON pointer of the field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..compiler.errors import PolicyFormatError
from ..compiler.files import read_limited
from ..compiler.policy.canonical import strict_loads
from .errors import SekuireRuntimeError

__all__ = ["DEFAULT_MANIFEST_FILE", "LLMConfig", "Manifest", "ManifestError", "load_manifest", "manifest_input"]

DEFAULT_MANIFEST_FILE = "sekuire.yml"
_MAX_MANIFEST_BYTES = 1 << 20


class ManifestError(SekuireRuntimeError):
    """A sekuire.yml (or its tools file) that cannot be used."""

    code = "manifest"


@dataclass(frozen=True)
class LLMConfig:
    provider: str
    model: str
    api_key_env: str | None = None
    base_url: str | None = None


@dataclass(frozen=True)
class Manifest:
    """The parts of a sekuire.yml that policies and the runtime read."""

    path: Path
    name: str
    llm: LLMConfig
    tools: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    #: ``logging.enabled``; None when the manifest does not say.
    logging_enabled: bool | None = None


def _read_document(path: Path) -> Any:
    try:
        data = read_limited(path, _MAX_MANIFEST_BYTES)
    except OSError as exc:
        raise ManifestError(exc.strerror or str(exc), source=str(path)) from None
    if path.suffix == ".json":
        try:
            return strict_loads(data)
        except PolicyFormatError as exc:
            raise ManifestError(exc.message, source=str(path)) from None
    try:
        return yaml.safe_load(data)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise ManifestError(f"malformed YAML: {problem}{where}", source=str(path)) from None


class _Reader:
    """Typed field access that reports the file and JSON pointer of a bad field."""

    def __init__(self, source: Path) -> None:
        self.source = str(source)

    def error(self, pointer: str, message: str) -> ManifestError:
        return ManifestError(message, source=self.source, pointer=pointer)

    def mapping(self, value: Any, pointer: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            missing = value is None and pointer != ""
            raise self.error(pointer, "required field is missing" if missing else "expected a mapping")
        return value

    def optional_mapping(self, value: Any, pointer: str) -> dict[str, Any]:
        return {} if value is None else self.mapping(value, pointer)

    def string(self, value: Any, pointer: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(pointer, "required field is missing" if value is None else "expected a non-empty string")
        return value

    def optional_bool(self, value: Any, pointer: str) -> bool | None:
        if value is not None and not isinstance(value, bool):
            raise self.error(pointer, "expected true or false")
        return value

    def optional_string(self, value: Any, pointer: str) -> str | None:
        return None if value is None else self.string(value, pointer)

    def names(self, value: Any, pointer: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.error(pointer, "expected a list")
        names = []
        for index, item in enumerate(value):
            item_pointer = f"{pointer}/{index}"
            if isinstance(item, dict):
                item, item_pointer = item.get("name"), f"{item_pointer}/name"
            names.append(self.string(item, item_pointer))
        return tuple(names)


def _load_tools(value: Any, manifest_path: Path, reader: _Reader) -> tuple[str, ...]:
    if not isinstance(value, str):
        return reader.names(value, "/agent/tools")
    tools_path = manifest_path.parent / reader.string(value, "/agent/tools")
    document = _read_document(tools_path)
    tools_reader = _Reader(tools_path)
    if isinstance(document, dict):
        return tools_reader.names(document.get("tools"), "/tools")
    if not isinstance(document, list):
        raise tools_reader.error("", "expected a list of tools or {\"tools\": [...]}")
    return tools_reader.names(document, "")


def load_manifest(path: str | os.PathLike[str] = DEFAULT_MANIFEST_FILE) -> Manifest:
    """Read and check a sekuire.yml; tools files are resolved relative to it."""
    path = Path(path)
    reader = _Reader(path)
    document = reader.mapping(_read_document(path), "")
    agent = reader.mapping(document.get("agent"), "/agent")
    llm = reader.mapping(agent.get("llm"), "/agent/llm")
    capabilities = reader.optional_mapping(document.get("capabilities"), "/capabilities")
    logging_section = reader.optional_mapping(document.get("logging"), "/logging")
    return Manifest(
        path=path,
        name=reader.string(agent.get("name"), "/agent/name"),
        llm=LLMConfig(
            provider=reader.string(llm.get("provider"), "/agent/llm/provider"),
            model=reader.string(llm.get("model"), "/agent/llm/model"),
            api_key_env=reader.optional_string(llm.get("api_key_env"), "/agent/llm/api_key_env"),
            base_url=reader.optional_string(llm.get("base_url"), "/agent/llm/base_url"),
        ),
        tools=_load_tools(agent.get("tools"), path, reader),
        provides=reader.names(capabilities.get("provides"), "/capabilities/provides"),
        logging_enabled=reader.optional_bool(logging_section.get("enabled"), "/logging/enabled"),
    )


def manifest_input(manifest: Manifest) -> dict[str, Any]:
    """The input of ``data.sekuire.workspaces.<ws>.manifest`` (DESIGN.md section 4, push gate)."""
    document: dict[str, Any] = {
        "agent": {"name": manifest.name, "llm": {"provider": manifest.llm.provider, "model": manifest.llm.model}},
        "tools": list(manifest.tools),
        "capabilities": {"provides": list(manifest.provides)},
    }
    if manifest.logging_enabled is not None:
        document["logging"] = {"enabled": manifest.logging_enabled}
    return document
