"""The Rego library (Jinja2 templates rendered per workspace) and example policies, shipped as package data."""

__all__: list[str] = []
