"""Rego generation: the library templates rendered per workspace, policy content lowered to data, the compile step.

Modules: :mod:`.library` (``policies/rego/*.rego.j2`` rendered under a
workspace package), :mod:`.lowering` (content -> indexed data document),
:mod:`.compile` (``compile_policy``). Public names are re-exported by
:mod:`sekuire.compiler`.
"""

__all__: list[str] = []
