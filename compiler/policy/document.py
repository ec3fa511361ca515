"""Reading a policy.json into a verified :class:`Policy`, the object the compiler and runtime take."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PolicyError, PolicyFormatError
from ..files import read_limited
from .canonical import strict_loads
from .integrity import SignatureStatus, verify_document
from .keyring import Keyring, resolve_keyring
from .model import Envelope, PolicyContent, parse_content, parse_envelope

__all__ = ["MAX_POLICY_BYTES", "Policy", "load_policy", "parse_policy"]

#: Larger documents are refused before parsing (a 100,000-entry policy is about 3 MiB).
MAX_POLICY_BYTES = 16 << 20


@dataclass(frozen=True)
class Policy:
    """A policy.json whose hash (and, unless ``signature_status == "unsigned"``, signature) checked out."""

    policy_id: str
    workspace_id: str
    version: str
    status: str
    hash: str
    signing_key_id: str | None
    signature_status: SignatureStatus
    content: PolicyContent
    raw_content: dict[str, Any] = field(repr=False)
    unknown_sections: dict[str, Any] = field(default_factory=dict, repr=False)
    warnings: tuple[str, ...] = ()
    activated_at: str | None = None
    updated_at: str | None = None
    document: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def revision(self) -> str:
        """The bundle revision: policy version and a hash prefix, unique per content."""
        return f"{self.policy_id}@v{self.version}-{self.hash[:16]}"


def parse_policy(
    document: Any,
    keyring: Keyring | str | os.PathLike[str] | None = None,
    *,
    allow_unsigned: bool = False,
    trust_embedded_key: bool = False,
    source: str | None = None,
) -> Policy:
    """Validate and verify an already-parsed policy.json document."""
    try:
        envelope: Envelope = parse_envelope(document)
        content, unknown, warnings = parse_content(envelope.content)
        status = verify_document(
            document,
            resolve_keyring(keyring),
            allow_unsigned=allow_unsigned,
            trust_embedded_key=trust_embedded_key,
        )
    except PolicyError as exc:
        if source:
            exc.with_source(source)
        raise
    return Policy(
        policy_id=envelope.policy_id,
        workspace_id=envelope.workspace_id,
        version=envelope.version,
        status=envelope.status,
        hash=envelope.hash,
        signing_key_id=envelope.signing_key_id,
        signature_status=status,
        content=content,
        raw_content=envelope.content,
        unknown_sections=unknown,
        warnings=tuple(warnings),
        activated_at=envelope.activated_at,
        updated_at=envelope.updated_at,
        document=document,
    )


def load_policy(
    path: str | os.PathLike[str],
    keyring: Keyring | str | os.PathLike[str] | None = None,
    allow_unsigned: bool = False,
    *,
    trust_embedded_key: bool = False,
) -> Policy:
    """Read, validate and verify a policy.json file (DESIGN.md section 8)."""
    source = str(path)
    try:
        data = read_limited(Path(path), MAX_POLICY_BYTES)
    except OSError as exc:
        raise PolicyFormatError(exc.strerror or str(exc), source=source) from None
    try:
        document = strict_loads(data)
    except PolicyFormatError as exc:
        raise exc.with_source(source) from None
    return parse_policy(
        document, keyring, allow_unsigned=allow_unsigned, trust_embedded_key=trust_embedded_key, source=source
    )
