"""Test data and the scripts that generate it."""
