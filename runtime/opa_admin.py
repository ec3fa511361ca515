"""OPA's management plane through opa-python-client: health, readiness, status, and pushing a compiled policy.

Decisions never go through here (:class:`~sekuire.runtime.OPAEngine` keeps its
own lean client for the hot path: opa-python-client's synchronous query costs
about three times as much). This module serves what an operator does around
them: is OPA up, are its bundles activated, which revisions does it serve, and,
for an OPA that is not bundle-driven, putting a workspace's compiled policy in
through the policy and data APIs (data first, then the modules in the order
their imports need). opa-python-client is the optional extra ``[opa]``,
imported only here and only when called.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..compiler.textsafe import clean, redact_url
from .errors import EngineResponseError, EngineUnavailable

if TYPE_CHECKING:
    from ..compiler.rego.compile import CompiledPolicy

__all__ = ["health", "module_order", "push_policy", "status", "wait_until_ready"]

_PACKAGE = re.compile(r"^package\s+(\S+)", re.MULTILINE)
_IMPORT = re.compile(r"^import\s+data\.(\S+)", re.MULTILINE)


def _client(url: str, *, token: str | None = None, timeout: float = 5.0, headers: Mapping[str, str] | None = None) -> Any:
    try:
        from opa_client import OpaClient  # type: ignore[import-untyped]
    except ImportError:
        raise EngineUnavailable(
            "OPA's management plane needs opa-python-client: pip install 'sekuire-opa[opa]'"
        ) from None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EngineUnavailable(f"{redact_url(url)}: expected an http(s) URL of an OPA server")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    client = OpaClient(host=parts.hostname, port=port, ssl=parts.scheme == "https", token=token, timeout=timeout,
                       retries=0, headers=dict(headers or {}))
    client.root_url = f"{_base(url)}/v1"
    return client


def _base(url: str) -> str:
    """The server's URL without userinfo; an OPA behind a path prefix (a proxy) keeps it (the client's root has none)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path.rstrip('/')}"


def health(url: str, *, bundles: bool = False, token: str | None = None, timeout: float = 5.0,
           headers: Mapping[str, str] | None = None) -> bool:
    """Whether OPA answers ``/health`` with 200 (``bundles``: and has activated every configured bundle)."""
    client = _client(url, token=token, timeout=timeout, headers=headers)
    try:
        return bool(client.check_health({"bundles": True} if bundles else None, diagnostic_url=f"{_base(url)}/health"))
    finally:
        client.close_connection()


def wait_until_ready(url: str, *, bundles: bool = True, timeout: float = 30.0, interval: float = 0.2,
                     token: str | None = None, headers: Mapping[str, str] | None = None) -> None:
    """Return once OPA is healthy (and, with ``bundles``, every bundle activated); EngineUnavailable after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not health(url, bundles=bundles, token=token, headers=headers,
                     timeout=min(5.0, max(0.1, deadline - time.monotonic()))):
        if time.monotonic() + interval > deadline:
            what = "healthy with its bundles activated" if bundles else "healthy"
            raise EngineUnavailable(f"{redact_url(url)}: not {what} within {timeout:g} s")
        time.sleep(interval)


def status(url: str, *, token: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """``{"healthy", "bundles_ready", "bundles": {name: revision}, "policies": [ids]}`` of the OPA at ``url``.

    Bundle revisions come from ``data.system.bundles`` (where OPA keeps each activated bundle's manifest).
    """
    client = _client(url, token=token, timeout=timeout)
    try:
        healthy = bool(client.check_health(diagnostic_url=f"{_base(url)}/health"))
        ready = healthy and bool(client.check_health({"bundles": True}, diagnostic_url=f"{_base(url)}/health"))
        if not healthy:
            return {"healthy": False, "bundles_ready": False, "bundles": {}, "policies": []}
        try:
            policies = client.get_policies_list()
        except Exception as exc:  # noqa: BLE001 - the client raises requests' and its own errors
            raise EngineResponseError(f"{redact_url(url)}: {type(exc).__name__}: {clean(str(exc))}") from None
        try:
            manifests = client.get_data("system/bundles").get("result") or {}
        except Exception:  # noqa: BLE001 - undefined (PolicyNotFoundError): no bundle activated
            manifests = {}
    finally:
        client.close_connection()
    bundles = {
        str(name): str((info.get("manifest") or {}).get("revision", ""))
        for name, info in (manifests.items() if isinstance(manifests, dict) else ())
        if isinstance(info, dict)
    }
    return {"healthy": healthy, "bundles_ready": ready, "bundles": bundles, "policies": sorted(map(str, policies))}


def module_order(modules: Mapping[str, str]) -> list[str]:
    """The module paths in an order where each comes after the modules whose packages it imports."""
    package_of = {path: match.group(1) for path, source in modules.items() if (match := _PACKAGE.search(source))}
    path_of = {package: path for path, package in package_of.items()}
    needs = {
        path: sorted({path_of[name] for name in _imports(source, path_of) if path_of[name] != path})
        for path, source in modules.items()
    }
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(path: str) -> None:
        if path in ordered or path in visiting:
            return  # done, or an import cycle (OPA refuses it anyway: pushed in name order)
        visiting.add(path)
        for needed in needs[path]:
            visit(needed)
        visiting.discard(path)
        ordered.append(path)

    for path in sorted(modules):
        visit(path)
    return ordered


def _imports(source: str, packages: Mapping[str, str]) -> list[str]:
    """Packages among ``packages`` that ``source`` imports whole (``import data.<package>``). An import of data
    below a package (``data.<ws>.policy``, the workspace's data) is not a module to wait for."""
    return [imported for imported in _IMPORT.findall(source) if imported in packages]


def push_policy(url: str, compiled: CompiledPolicy, *, token: str | None = None, timeout: float = 10.0) -> list[str]:
    """Put a compiled policy into an OPA that is not bundle-driven: its data under the workspace root, then its
    modules (ids are their bundle paths) in dependency order. Returns the module ids; EngineError on a refusal
    (OPA refuses paths owned by a bundle, and modules that do not compile)."""
    client = _client(url, token=token, timeout=timeout)
    root = compiled.root
    data: Any = compiled.data
    for segment in root.split("/"):
        data = data[segment]
    pushed: list[str] = []
    current = f"data {root}"
    try:
        client.update_or_create_data(data, root)
        for path in module_order(compiled.modules):
            current = f"module {path}"
            client.update_policy_from_string(compiled.modules[path], path, rego_compat=False)
            pushed.append(path)
    except Exception as exc:  # noqa: BLE001 - the client raises requests' and its own errors
        raise EngineResponseError(f"{redact_url(url)}: {current} refused: {type(exc).__name__}: {clean(str(exc))}") from None
    finally:
        client.close_connection()
    return pushed
