"""The subcommand modules, in the order ``sekuire --help`` lists them."""

from __future__ import annotations

from . import bundle_cmd, keys_cmd, mcp_cmd, ops_cmd, policy_cmd, push_cmd

__all__ = ["MODULES"]

MODULES = [policy_cmd, bundle_cmd, push_cmd, keys_cmd, ops_cmd, mcp_cmd]
