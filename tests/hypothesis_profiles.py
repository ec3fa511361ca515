"""Hypothesis settings for the property tests (tests/test_properties.py) and the fuzzer (``python -m tests.fuzz``).

Profiles, picked by ``SEKUIRE_HYPOTHESIS_PROFILE`` (default: ``ci`` when ``CI`` is set, else ``dev``):

- ``ci``: derandomized, so a CI run is reproducible and never flaky; a moderate number of examples;
- ``dev``: random, with hypothesis' example database, so failures found locally are replayed first;
- ``deep``: random (the seed is printed by ``make properties-deep``), thousands of examples per property,
  no database; run before each release and by ``make mutate``;
- ``fuzz``: no example limit; the fuzzer bounds each target by time instead.

Tests apply :data:`PROPERTY_SETTINGS` as a decorator rather than loading a profile
globally, so importing this module changes nothing for other suites.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["PROFILE", "PROPERTY_SETTINGS", "profile"]

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}

settings.register_profile("ci", derandomize=True, database=None, max_examples=60, print_blob=True, **_COMMON)
settings.register_profile("dev", max_examples=60, **_COMMON)
settings.register_profile("deep", max_examples=3000, database=None, print_blob=True, **_COMMON)
settings.register_profile("fuzz", max_examples=10**9, database=None, **_COMMON)


def profile() -> str:
    """The profile name the environment asks for."""
    return os.environ.get("SEKUIRE_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")


#: The selected profile's name and settings (usable as a decorator: ``@PROPERTY_SETTINGS``).
PROFILE = profile()
PROPERTY_SETTINGS = settings.get_profile(PROFILE)
