"""The policy.json model: the signed envelope and the v1 content sections.

The envelope comes from a backend we do not own, so unknown envelope fields are
tolerated. Content is what gets enforced: a field inside a known section that we
do not understand is an error (a misspelt ``blocked_domains`` must never be
silently ignored), while an unknown *top-level* section is kept and reported as
a warning so that newer backends do not break older runtimes.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

from ..errors import PolicyFormatError

__all__ = [
    "AgentSection",
    "ApisSection",
    "CapabilitiesSection",
    "ComplianceSection",
    "Envelope",
    "FilesystemSection",
    "KNOWN_SECTIONS",
    "ModelsSection",
    "NetworkSection",
    "PermissionsSection",
    "PolicyContent",
    "RateLimitSection",
    "RateLimitsSection",
    "ToolsSection",
    "parse_content",
    "parse_envelope",
]


class _Section(BaseModel):
    # Strict scalars; arrays arrive as JSON lists and are kept as tuples.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelsSection(_Section):
    allowed_providers: tuple[StrictStr, ...] = ()
    allowed_models: tuple[StrictStr, ...] = ()
    denied_models: tuple[StrictStr, ...] = ()


class CapabilitiesSection(_Section):
    allowed_tools: tuple[StrictStr, ...] = ()
    denied_tools: tuple[StrictStr, ...] = ()


class AgentSection(_Section):
    models: ModelsSection | None = None
    capabilities: CapabilitiesSection | None = None


class NetworkSection(_Section):
    enabled: StrictBool = True
    # Secure by default: a policy that names domains but says nothing of TLS gets TLS.
    require_tls: StrictBool = True
    allowed_domains: tuple[StrictStr, ...] = ()
    blocked_domains: tuple[StrictStr, ...] = ()


class FilesystemSection(_Section):
    enabled: StrictBool = True
    allowed_paths: tuple[StrictStr, ...] = ()
    blocked_paths: tuple[StrictStr, ...] = ()
    allowed_extensions: tuple[StrictStr, ...] = ()
    # None: every operation is allowed; a list restricts them.
    allowed_operations: tuple[StrictStr, ...] | None = None


class ToolsSection(_Section):
    allowed_tools: tuple[StrictStr, ...] = ()
    blocked_tools: tuple[StrictStr, ...] = ()


class ApisSection(_Section):
    allowed_apis: tuple[StrictStr, ...] = ()
    blocked_apis: tuple[StrictStr, ...] = ()


class PermissionsSection(_Section):
    network: NetworkSection | None = None
    filesystem: FilesystemSection | None = None
    tools: ToolsSection | None = None
    apis: ApisSection | None = None


class RateLimitSection(_Section):
    max_per_minute: StrictInt | None = Field(default=None, ge=0)
    max_per_hour: StrictInt | None = Field(default=None, ge=0)


class RateLimitsSection(_Section):
    requests: RateLimitSection | None = None
    tokens: RateLimitSection | None = None


class ComplianceSection(_Section):
    # Unknown keys are errors as in every other section: a misspelt require_audit_logging must not
    # leave audit logging off. ``note`` is the one free-text field (the contract's vectors carry it).
    frameworks: tuple[StrictStr, ...] = ()
    require_audit_logging: StrictBool = False
    data_residency: StrictStr | None = None
    note: StrictStr | None = None


class PolicyContent(_Section):
    agent: AgentSection | None = None
    permissions: PermissionsSection | None = None
    rate_limits: RateLimitsSection | None = None
    compliance: ComplianceSection | None = None


KNOWN_SECTIONS = frozenset(PolicyContent.model_fields)


class Envelope(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    policy_id: StrictStr = Field(min_length=1)
    workspace_id: StrictStr = Field(min_length=1)
    version: StrictStr = Field(min_length=1)
    status: StrictStr
    hash: StrictStr
    content: dict[str, Any]
    signature: StrictStr | None = None
    signing_key_id: StrictStr | None = None
    activated_at: StrictStr | None = None
    updated_at: StrictStr | None = None
    signing_public_key: StrictStr | None = None


_MESSAGES = {
    "string_type": "expected string",
    "bool_type": "expected boolean",
    "int_type": "expected integer",
    "tuple_type": "expected array",
    "list_type": "expected array",
    "dict_type": "expected object",
    "model_type": "expected object",
    "model_attributes_type": "expected object",
    "extra_forbidden": "unknown field",
    "missing": "required field is missing",
    "string_too_short": "must not be empty",
    "greater_than_equal": "must be >= 0",
}


def _pointer(prefix: str, loc: tuple[Any, ...]) -> str:
    parts = [_CONTROL.sub(_escape, str(p).replace("~", "~0").replace("/", "~1")) for p in loc]
    return prefix + "".join("/" + p for p in parts)


# A key is the document's own text: control characters in it would break the one-line error.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _format_error(exc: ValidationError, prefix: str) -> PolicyFormatError:
    first = exc.errors(include_url=False)[0]
    message = _MESSAGES.get(first["type"], first["msg"])
    return PolicyFormatError(message, pointer=_pointer(prefix, tuple(first["loc"])))


def parse_envelope(document: Any) -> Envelope:
    """Validate the envelope fields of a parsed policy.json."""
    if not isinstance(document, dict):
        raise PolicyFormatError("expected a JSON object", pointer="")
    try:
        return Envelope.model_validate(document)
    except ValidationError as exc:
        raise _format_error(exc, "") from None


def parse_content(content: dict[str, Any]) -> tuple[PolicyContent, dict[str, Any], list[str]]:
    """Validate content; return the model, unknown top-level sections, and warnings."""
    unknown = {k: v for k, v in content.items() if k not in KNOWN_SECTIONS}
    known = {k: v for k, v in content.items() if k in KNOWN_SECTIONS}
    try:
        model = PolicyContent.model_validate(known)
    except ValidationError as exc:
        raise _format_error(exc, "/content") from None
    warnings = [f"/content/{name}: unknown section kept but not enforced" for name in sorted(unknown)]
    return model, unknown, warnings
