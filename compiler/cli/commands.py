"""The subcommand modules, in the order ``sekuire --help`` lists them."""

from __future__ import annotations



__all__ = ["MODULES"]

MODULES: list = []
