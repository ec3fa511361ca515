"""The subcommand modules, in the order ``sekuire --help`` lists them."""

from __future__ import annotations

from . import keys_cmd, policy_cmd

__all__ = ["MODULES"]

MODULES = [policy_cmd, keys_cmd]
