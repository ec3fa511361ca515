"""How OPA authenticates to a service of ``sekuire opa-config``: bearer token, mTLS client certificate, S3 signing.

Secrets never go into the config: a bearer token is read by OPA from a file
(``token_path``, so a rotated token is picked up) or from an environment
variable (OPA substitutes ``${VAR}`` in its config); a client certificate and
key are file paths; S3 signing reads the standard AWS environment variables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import CompileError

__all__ = ["Credentials", "service"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Credentials:
    """At most one way of authenticating (OPA takes one credentials type a service), and the CA to trust."""

    bearer_token_file: str | None = None
    bearer_token_env: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    ca_cert: str | None = None
    s3_signing: bool = False

    def check(self) -> None:
        """CompileError naming the flags when the combination is not one OPA can use."""
        chosen = [flag for flag, on in (
            ("--bearer-token-file", self.bearer_token_file), ("--bearer-token-env", self.bearer_token_env),
            ("--client-cert", self.client_cert or self.client_key), ("--s3-signing", self.s3_signing),
        ) if on]
        if len(chosen) > 1:
            raise CompileError(f"one credentials type a service: {' and '.join(chosen)} cannot be combined")
        if bool(self.client_cert) != bool(self.client_key):
            raise CompileError("--client-cert and --client-key go together")
        if self.bearer_token_env is not None and not _ENV_NAME.fullmatch(self.bearer_token_env):
            raise CompileError(f"--bearer-token-env must name an environment variable, not {self.bearer_token_env!r}")

    def as_opa(self) -> dict[str, Any]:
        """OPA's ``credentials`` object for a service ({} for none)."""
        if self.bearer_token_file:
            return {"bearer": {"token_path": self.bearer_token_file}}
        if self.bearer_token_env:
            return {"bearer": {"token": "${" + self.bearer_token_env + "}"}}
        if self.client_cert and self.client_key:
            return {"client_tls": {"cert": self.client_cert, "private_key": self.client_key}}
        if self.s3_signing:
            return {"s3_signing": {"environment_credentials": {}}}
        return {}


def service(url: str, credentials: Credentials | None = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One entry of OPA's ``services``: its URL, credentials, the CA it trusts, extra headers."""
    if not url.startswith(("http://", "https://")):
        raise CompileError(f"service URL must be http(s): {url!r}")
    entry: dict[str, Any] = {"url": url.rstrip("/")}
    if credentials is not None:
        credentials.check()
        if opa := credentials.as_opa():
            entry["credentials"] = opa
        if credentials.ca_cert:
            if not url.startswith("https://"):
                raise CompileError("--ca-cert needs an https:// service URL")
            entry["tls"] = {"ca_cert": credentials.ca_cert}
        if credentials.client_cert and not url.startswith("https://"):
            raise CompileError("--client-cert needs an https:// service URL")
    if headers:
        entry["headers"] = dict(headers)
    return entry
