"""sekuire.runtime: enforce workspace policies in Python agents through OPA queries."""

from __future__ import annotations

__all__: list[str] = []
