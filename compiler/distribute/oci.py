"""Workspace bundles as OCI artifacts: what OPA's ``oci`` services pull (the ``oras`` client, the extra ``[oci]``).

``sekuire publish --oci REGISTRY/REPOSITORY[:TAG]`` pushes each workspace's
signed bundle to ``REGISTRY/REPOSITORY/<ws>:TAG`` (``latest`` without a tag)
as an OCI image manifest with one layer, the bundle, of media type
``application/vnd.oci.image.layer.v1.tar+gzip`` and an empty image config:
the layout OPA's OCI downloader reads. ``sekuire opa-config --oci`` writes the
matching ``services`` entry (``type: oci``) and bundle resources. The
signature travels inside the bundle, so OPA verifies it as for any bundle.
Registry credentials come from ``SEKUIRE_OCI_USERNAME``/``SEKUIRE_OCI_PASSWORD``
(never from the command line).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CompileError
from ..rego.library import check_workspace_id

__all__ = ["BUNDLE_MEDIA_TYPE", "CONFIG_MEDIA_TYPE", "OCIReference", "push_bundle"]

BUNDLE_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"

# registry[:port]/repository[/more][:tag]: lower-case repository path components, as the distribution spec has them
_REFERENCE = re.compile(
    r"(?P<registry>[A-Za-z0-9.-]+(?::[0-9]{1,5})?)/(?P<repository>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
)


@dataclass(frozen=True)
class OCIReference:
    """``REGISTRY/REPOSITORY[:TAG]`` as given to ``--oci``; each workspace gets ``REPOSITORY/<ws>``."""

    registry: str
    repository: str
    tag: str = "latest"

    @classmethod
    def parse(cls, text: str) -> OCIReference:
        """CompileError naming ``--oci`` for anything that is not a registry, a repository and an optional tag."""
        match = _REFERENCE.fullmatch(text)
        if match is None:
            raise CompileError(f"--oci must be REGISTRY/REPOSITORY[:TAG] (lower-case repository), not {text!r}")
        return cls(match["registry"], match["repository"], match["tag"] or "latest")

    def for_workspace(self, workspace_id: str) -> str:
        """``REGISTRY/REPOSITORY/<ws>:TAG``: where one workspace's bundle lives (its id lower-cased, ``_`` kept)."""
        segment = check_workspace_id(workspace_id).lower()
        if not re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+)*", segment):
            raise CompileError(f"workspace id {workspace_id!r} cannot name an OCI repository")
        return f"{self.registry}/{self.repository}/{segment}:{self.tag}"


def push_bundle(reference: str, bundle: bytes, *, plain_http: bool = False) -> None:
    """Push one signed bundle as the OCI artifact OPA pulls; CompileError naming the reference on failure."""
    try:
        import oras.client  # type: ignore[import-untyped]
    except ImportError:
        raise CompileError("--oci needs the oras client: pip install 'sekuire-opa[oci]'") from None
    registry = reference.split("/", 1)[0]
    client: Any = oras.client.OrasClient(hostname=registry, insecure=plain_http)
    username, password = os.environ.get("SEKUIRE_OCI_USERNAME"), os.environ.get("SEKUIRE_OCI_PASSWORD")
    with tempfile.TemporaryDirectory(prefix="sekuire-oci-") as folder:
        try:
            if username and password:
                client.login(username=username, password=password, hostname=registry, insecure=plain_http)
            bundle_file, config_file = Path(folder) / "bundle.tar.gz", Path(folder) / "config.json"
            bundle_file.write_bytes(bundle)
            config_file.write_text("{}", encoding="utf-8")
            response = client.push(
                target=reference,
                files=[f"{bundle_file}:{BUNDLE_MEDIA_TYPE}"],
                manifest_config=f"{config_file}:{CONFIG_MEDIA_TYPE}",
                disable_path_validation=True,
                quiet=True,
            )
        except Exception as exc:  # noqa: BLE001 - oras raises requests' errors and its own ValueErrors
            raise CompileError(f"{reference}: push failed: {type(exc).__name__}: {str(exc)[:300]}") from None
    if getattr(response, "status_code", 0) not in (200, 201):
        raise CompileError(f"{reference}: push failed: HTTP {getattr(response, 'status_code', '?')}")
