"""Signed bundles as OCI artifacts: the references ``--oci REGISTRY/REPOSITORY[:TAG]`` names, and the push.

OPA's ``oci`` service pulls an image manifest and activates its first layer of
media type ``application/vnd.oci.image.layer.v1.tar+gzip`` (OPA's
``download/oci_download.go``); the layer digest is its ETag, so an unchanged
bundle is not activated again. ``push_bundle`` writes exactly that artifact: the
bundle bytes as that one layer, an empty ``application/vnd.oci.image.config.v1+json``
config (what ``oras push --config`` and OPA's own test data use), and the bundle
revision as the ``org.opencontainers.image.revision`` annotation.

Each workspace gets a repository of its own below the one given
(``REGISTRY/REPOSITORY/<ws>:TAG``), and a discovery bundle, if any, is pushed to
the given reference itself. The push uses the ``oras`` SDK (the ``[oci]`` extra,
imported only here, only when pushing); registry credentials come from the
Docker/oras config (``docker login``/``oras login``). A registry served over
plain HTTP needs ``plain_http=True``: nothing falls back to it silently.
"""

from __future__ import annotations

import importlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DistributionError

__all__ = [
    "BUNDLE_LAYER_MEDIA_TYPE",
    "CONFIG_MEDIA_TYPE",
    "DEFAULT_TAG",
    "OCIReference",
    "parse_oci_reference",
    "push_bundle",
]

BUNDLE_LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
DEFAULT_TAG = "latest"
_REVISION_ANNOTATION = "org.opencontainers.image.revision"

# The OCI distribution spec's grammar: a host[:port], path components, a tag.
_REGISTRY = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]{1,5})?")
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class OCIReference:
    """``REGISTRY/REPOSITORY:TAG``, parsed; :meth:`workspace` names each workspace's repository below it."""

    registry: str
    repository: str
    tag: str = DEFAULT_TAG

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"

    def workspace(self, workspace_id: str) -> str:
        """The reference a workspace's bundle is pushed to and OPA pulls: ``REGISTRY/REPOSITORY/<ws>:TAG``."""
        if not _COMPONENT.fullmatch(workspace_id):
            raise DistributionError(
                f"workspace id {workspace_id!r} cannot name an OCI repository (lower-case letters and digits, "
                "separated by . _ __ or -): publish it with --site instead"
            )
        return f"{self.registry}/{self.repository}/{workspace_id}:{self.tag}"


def parse_oci_reference(text: str, *, flag: str = "--oci") -> OCIReference:
    """``REGISTRY/REPOSITORY[:TAG]`` (tag ``latest`` by default); DistributionError naming ``flag`` otherwise."""

    def fail(why: str) -> DistributionError:
        return DistributionError(f"{flag}: {text!r} {why}; expected REGISTRY/REPOSITORY[:TAG]")

    if "://" in text:
        raise fail("has a scheme (give --plain-http for a registry served over http)")
    if "@" in text:
        raise fail("pins a digest; publish pushes a tag")
    registry, _, rest = text.partition("/")
    if not rest:
        raise fail("names no registry")
    if not _REGISTRY.fullmatch(registry):
        raise fail(f"has an invalid registry {registry!r}")
    repository, tag = rest, DEFAULT_TAG
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = rest.rsplit(":", 1)
    if not _TAG.fullmatch(tag):
        raise fail(f"has an invalid tag {tag!r}")
    if not all(_COMPONENT.fullmatch(part) for part in repository.split("/")):
        raise fail("has an invalid repository (lower-case letters and digits, separated by . _ __ - and /)")
    return OCIReference(registry=registry, repository=repository, tag=tag)


def _oras() -> Any:
    try:
        return importlib.import_module("oras.provider")
    except ImportError:
        raise DistributionError("publishing to an OCI registry needs the oci extra: pip install 'sekuire-opa[oci]'") from None


def push_bundle(reference: str, bundle: bytes, *, revision: str, name: str, plain_http: bool = False) -> str:
    """Push ``bundle`` to ``reference`` as the artifact OPA pulls; return the manifest digest the registry reports."""
    provider = _oras()
    registry = reference.split("/", 1)[0]
    with tempfile.TemporaryDirectory(prefix="sekuire-oci-") as folder:
        layer = Path(folder) / name
        layer.write_bytes(bundle)
        config = Path(folder) / "config.json"
        config.write_bytes(b"{}")
        try:
            client = provider.Registry(hostname=registry, insecure=plain_http)
            response = client.push(
                target=reference,
                files=[f"{layer}:{BUNDLE_LAYER_MEDIA_TYPE}"],
                manifest_config=f"{config}:{CONFIG_MEDIA_TYPE}",
                manifest_annotations={_REVISION_ANNOTATION: revision},
                disable_path_validation=True,
                quiet=True,
            )
        except (OSError, ValueError) as exc:  # requests' errors are OSErrors; oras raises ValueError on refusals
            hint = " (a registry served over http needs --plain-http)" if "SSL" in type(exc).__name__ else ""
            raise DistributionError(f"push failed: {_one_line(exc)}{hint}", source=reference) from None
    if response.status_code not in (200, 201):
        raise DistributionError(f"the registry refused the manifest: HTTP {response.status_code}", source=reference)
    digest = response.headers.get("Docker-Content-Digest", "")
    return str(digest)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
