"""docs/api.md is generated from the code and current; every public class, function and method has a docstring."""

from __future__ import annotations

from .apidoc import TARGET, render, undocumented


def test_api_reference_is_current():
    assert TARGET.read_text(encoding="utf-8") == render(), "docs/api.md is stale: run `python -m tests.apidoc`"


def test_every_public_name_and_method_has_a_docstring():
    assert undocumented() == []
