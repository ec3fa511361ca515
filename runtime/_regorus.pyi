"""Type stub of the compiled extension ``sekuire.runtime._regorus`` (source: rust/src): regorus' Rego VM, shared across threads."""

from collections.abc import Sequence
from typing import Any

__all__ = ["CompileError", "EvalError", "MAX_DEPTH", "Policy", "RegorusError", "UndefinedError"]

#: The deepest nesting an input may have (regorus' JSON parser accepts as much).
MAX_DEPTH: int

class RegorusError(Exception):
    """Any regorus failure."""

class CompileError(RegorusError):
    """The modules, the data or an entry point do not compile."""

class EvalError(RegorusError):
    """Evaluation failed (a built-in error, a conflict between rules, a caught panic)."""

class UndefinedError(RegorusError):
    """The entry point is undefined for this input."""

class Policy:
    """Rego modules and data, compiled per entry point, evaluated by any thread with the GIL released."""

    def __init__(self, modules: Sequence[tuple[str, str]], data_json: str) -> None:
        """``modules``: (file name, Rego source) pairs; ``data_json``: the data document as JSON text."""

    def compile(self, rule: str) -> None:
        """Compile ``rule`` (such as ``data["p"]["allow"]``) now; CompileError if it cannot be."""

    def evaluate(self, rule: str, input: Any) -> Any:  # noqa: A002
        """The value of ``rule`` for ``input`` (JSON-like objects; TypeError or ValueError as json.dumps)."""

    def evaluate_text(self, rule: str, input: Any) -> str:  # noqa: A002
        """The value of ``rule`` for ``input`` (JSON-like objects) as compact JSON text, keys sorted."""

    def evaluate_json(self, rule: str, input_json: str) -> str:
        """The value of ``rule`` for ``input_json`` as compact JSON text."""

    def interpret(self, rule: str, input: Any) -> Any:  # noqa: A002
        """Like ``evaluate``, by regorus' interpreter only (for differential tests)."""

    def idle_vms(self) -> dict[str, int]:
        """Idle VMs per compiled entry point."""

def _panic_for_test(message: str) -> None:
    """Panic inside the engine's guard (raises EvalError; prints nothing)."""
