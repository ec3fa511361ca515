"""How OPA authenticates to a service of ``sekuire opa-config``: bearer token, mTLS client certificate, S3 signing.

Secrets never go into the config: a bearer token is read by OPA from a file
(``token_path``, so a rotated token is picked up) or from an environment
variable (OPA substitutes ``${VAR}`` in its config); a client certificate and
key are file paths; S3 signing reads the standard AWS environment variables.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import CompileError

__all__ = ["Credentials", "is_loopback", "service"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*")  # an HTTP token (RFC 9110)


@dataclass(frozen=True)
class Credentials:
    """At most one way of authenticating (OPA takes one credentials type a service), and the CA to trust."""

    bearer_token_file: str | None = None
    bearer_token_env: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    ca_cert: str | None = None
    s3_signing: bool = False
    #: The token's scheme (OPA's default: Bearer); ``Basic`` with ``user:password`` for a registry (OPA encodes it).
    bearer_scheme: str | None = None

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
        if self.bearer_scheme is not None:
            if not (self.bearer_token_file or self.bearer_token_env):
                raise CompileError("--bearer-scheme needs --bearer-token-file or --bearer-token-env")
            if not _SCHEME.fullmatch(self.bearer_scheme):
                raise CompileError(f"--bearer-scheme must be an HTTP authentication scheme, not {self.bearer_scheme!r}")
        if self.bearer_token_env is not None and not _ENV_NAME.fullmatch(self.bearer_token_env):
            raise CompileError(f"--bearer-token-env must name an environment variable, not {self.bearer_token_env!r}")

    def for_reporting(self, url: str, own: Credentials | None) -> Credentials | None:
        """What a decision-log or status service at ``url`` gets: its ``own`` token if given, and this OPA's client
        certificate and CA when ``url`` is https. Never this (bundle) service's token or S3 signing: a registry or
        bucket credential must not reach a log collector."""
        identity = (self.client_cert, self.client_key, self.ca_cert) if url.startswith("https://") else (None, None, None)
        token_file, token_env = (own.bearer_token_file, own.bearer_token_env) if own is not None else (None, None)
        if (token_file or token_env) and identity[0]:
            identity = (None, None, identity[2])  # one credentials type a service: the service's own token wins
        merged = Credentials(bearer_token_file=token_file, bearer_token_env=token_env, client_cert=identity[0],
                             client_key=identity[1], ca_cert=identity[2])
        return merged if merged != Credentials() else None

    def as_opa(self) -> dict[str, Any]:
        """OPA's ``credentials`` object for a service ({} for none)."""
        scheme = {"scheme": self.bearer_scheme} if self.bearer_scheme else {}
        if self.bearer_token_file:
            return {"bearer": {"token_path": self.bearer_token_file, **scheme}}
        if self.bearer_token_env:
            return {"bearer": {"token": "${" + self.bearer_token_env + "}", **scheme}}
        if self.client_cert and self.client_key:
            return {"client_tls": {"cert": self.client_cert, "private_key": self.client_key}}
        if self.s3_signing:
            return {"s3_signing": {"environment_credentials": {}}}
        return {}


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def service(url: str, credentials: Credentials | None = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One entry of OPA's ``services``: its URL, credentials, the CA it trusts, extra headers."""
    if not url.startswith(("http://", "https://")):
        raise CompileError(f"service URL must be http(s): {url!r}")
    entry: dict[str, Any] = {"url": url.rstrip("/")}
    if credentials is not None:
        credentials.check()
        if opa := credentials.as_opa():
            if "bearer" in opa and url.startswith("http://") and not is_loopback(url):
                raise CompileError(
                    f"--bearer-token-*: the token would cross the network in clear to {url}; use an https:// service"
                )
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
