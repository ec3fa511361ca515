"""The ``sekuire`` command line."""

from __future__ import annotations

from .main import main, run

__all__ = ["main", "run"]
