"""How OPA reaches and authenticates to one service: OPA's ``services.<name>`` entry with its credentials and TLS.

Secrets never enter the written config. A bearer token is named by the file OPA
re-reads before every request (``token_path``) or by an environment variable
that OPA substitutes when it reads its config file (``token: ${VAR}``); a client
certificate and its key are paths on the OPA host; S3 signing reads the AWS
variables of OPA's own environment (``environment_credentials``). OPA takes one
credential method per service, so at most one kind may be given; a CA
certificate for the server (``tls.ca_cert``) goes with any of them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import DistributionError

__all__ = ["Credentials", "is_loopback", "service_entry"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*")  # an RFC 9110 token


@dataclass(frozen=True)
class Credentials:
    """One service's credentials, as the CLI flags give them (paths and variable names, never secrets)."""

    bearer_token_file: str | None = None
    bearer_token_env: str | None = None
    #: ``Bearer`` unless the service wants another scheme (``Basic`` with ``user:password`` for a registry).
    bearer_scheme: str = "Bearer"
    client_cert: str | None = None
    client_key: str | None = None
    ca_cert: str | None = None
    s3_signing: bool = False

    @property
    def empty(self) -> bool:
        """Whether nothing at all is set (the service gets neither credentials nor TLS settings)."""
        return self == Credentials()


def _path(value: str, flag: str) -> str:
    if not value or value != value.strip() or any(ch in value for ch in "\n\r\0"):
        raise DistributionError(f"{flag}: {value!r} is not a usable file path")
    return value


def _credentials(creds: Credentials, flag: str) -> dict[str, Any] | None:
    """OPA's ``credentials`` object; ``flag`` is the prefix of the CLI flags (``--``, ``--status-``) for messages."""
    bearer = creds.bearer_token_file is not None or creds.bearer_token_env is not None
    client_tls = creds.client_cert is not None or creds.client_key is not None
    kinds = [name for name, on in (("bearer-token", bearer), ("client-cert", client_tls), ("s3-signing", creds.s3_signing)) if on]
    if len(kinds) > 1:
        raise DistributionError(
            f"{' and '.join(flag + k for k in kinds)}: OPA takes one credential method per service; give one"
        )
    if creds.bearer_scheme != "Bearer" and not bearer:
        raise DistributionError(f"{flag}bearer-scheme needs {flag}bearer-token-file or {flag}bearer-token-env")
    if bearer:
        if creds.bearer_token_file is not None and creds.bearer_token_env is not None:
            raise DistributionError(f"{flag}bearer-token-file and {flag}bearer-token-env: give one")
        if not _SCHEME.fullmatch(creds.bearer_scheme):
            raise DistributionError(f"{flag}bearer-scheme: {creds.bearer_scheme!r} is not an HTTP auth scheme")
        token: dict[str, Any] = {}
        if creds.bearer_token_file is not None:
            token["token_path"] = _path(creds.bearer_token_file, f"{flag}bearer-token-file")
        else:
            name = creds.bearer_token_env or ""
            if not _ENV_NAME.fullmatch(name):
                raise DistributionError(f"{flag}bearer-token-env: {name!r} is not an environment variable name")
            token["token"] = "${" + name + "}"  # OPA substitutes it from its environment when it loads the file
        token["scheme"] = creds.bearer_scheme
        return {"bearer": token}
    if client_tls:
        if creds.client_cert is None or creds.client_key is None:
            raise DistributionError(f"{flag}client-cert and {flag}client-key go together: give both")
        return {
            "client_tls": {
                "cert": _path(creds.client_cert, f"{flag}client-cert"),
                "private_key": _path(creds.client_key, f"{flag}client-key"),
            }
        }
    if creds.s3_signing:
        return {"s3_signing": {"environment_credentials": {}}}
    return None


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def service_entry(url: str, creds: Credentials, *, flag: str = "--", oci: bool = False) -> dict[str, Any]:
    """The ``services.<name>`` entry for ``url``; DistributionError naming the flag on anything OPA would refuse."""
    entry: dict[str, Any] = {"url": url.rstrip("/")}
    if oci:
        entry["type"] = "oci"
    credentials = _credentials(creds, flag)
    https = url.startswith("https://")
    if credentials is not None:
        if "bearer" in credentials and not https and not is_loopback(url):
            raise DistributionError(
                f"{flag}bearer-token-*: the token would cross the network in clear to {url!r}; use an https:// service"
            )
        if "client_tls" in credentials and not https:
            raise DistributionError(f"{flag}client-cert: a client certificate needs an https:// service, not {url!r}")
        entry["credentials"] = credentials
    if creds.ca_cert is not None:
        if not https:
            raise DistributionError(f"{flag}ca-cert: a CA certificate needs an https:// service, not {url!r}")
        entry["tls"] = {"ca_cert": _path(creds.ca_cert, f"{flag}ca-cert")}
    return entry
