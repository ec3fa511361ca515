"""Distribution: static publishing of policies and bundles, and OPA configuration for fleets that pull them.

Modules: :mod:`.publish` (``publish_site``), :mod:`.opaconfig` (OPA config
generation). Public names used by the CLI are imported from the modules.
"""

__all__: list[str] = []
