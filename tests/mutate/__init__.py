"""Mutation testing of the security core (``make mutate``): mutants of the Rego library, each run against the tests."""
