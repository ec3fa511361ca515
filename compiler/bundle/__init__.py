"""OPA bundles: the tar format, OPA's canonical JSON digests, signing keys, signing and verification.

Modules, one concern each as in OPA's own ``bundle`` package:
:mod:`.tarball` (deterministic writer, bounded reader), :mod:`.gojson` (the
canonical form OPA hashes), :mod:`.keys` (algorithms and key loading),
:mod:`.signing` (``BundleSigner``), :mod:`.verify` (``verify_bundle``), :mod:`.roots`
(``check_roots``: the manifest roots must cover the content, as OPA requires).
Public names are re-exported by :mod:`sekuire.compiler`.
"""

__all__: list[str] = []
