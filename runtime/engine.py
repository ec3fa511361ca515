"""The engine seam: one ``evaluate(path, input)`` between the enforcer's policy and whoever answers.

The enforcer owns policy (normalisation, caching, rate limits, callbacks,
fail-closed); an engine does one thing, answer an OPA data query, the way an
httpx transport handles one request. Two engines: :class:`EmbeddedEngine`
(in-process Rego through regorus, the default) and
:class:`~sekuire.runtime.opa.OPAEngine` (a real OPA over its REST API).

Every engine failure surfaces as :class:`EngineError`, which the enforcer turns
into a deny. regorus is used only in this module.

Why regorus' compiled RVM, one VM per thread (numbers below): regorus objects
are pinned to the thread that created them (pyo3 ``unsendable``: using, cloning
or even dropping one on another thread panics or leaks), so neither one engine
behind a lock nor ``Engine.clone()`` per thread is possible. The program is
compiled once and kept as bytes; each thread loads its own VM from them.
"""

from __future__ import annotations

import abc
import itertools
import json
import logging
import os
import threading
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import regorus

from ..compiler.errors import BundleVerificationError
from ..compiler.files import read_limited
from ..compiler.policy.document import Policy
from ..compiler.rego.compile import CompiledPolicy, compile_policy
from ..compiler.rego.library import workspace_root
from .errors import (
    EngineResponseError,
    EngineUnavailable,
    InvalidActionError,
    SekuireRuntimeError,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from ..compiler.bundle.tarball import Bundle

__all__ = ["EmbeddedEngine", "Engine", "decision_path", "rule_ref"]

logger = logging.getLogger(__name__)

# Measured on the vector policy's decision over a mix of six action types (regorus 0.13.0, CPython 3.11,
# a 2-core VM shared with other work, so +-30%):
#   regorus.Engine  (add_policy, set_input_json, eval_rule)               ~440-560 us/decision;
#                    4-7 ms to load the modules, ~3 ms for the first decision
#   regorus.Rvm     (compile_from_modules, set_input_json, execute_...)   ~55-70 us/decision;
#                    6-10 ms to compile, 0.2 ms for the first decision, <1 ms to load a VM in a new thread
#   8 threads on per-thread VMs: ~80-120 us/decision of wall time (the GIL allows no parallel speed-up);
#   one VM fed through a queue by its owner thread (the only way to share one): ~100-230 us.

# regorus marks an undefined result with this JSON string.
_UNDEFINED = '"<undefined>"'

_MAX_KEY_BYTES = 1 << 16

_engine_ids = itertools.count(1)
# Per thread: engine id -> (weak reference to the engine, {entry point: Rvm}). Kept outside the
# engine so that a VM is only ever dropped by the thread that made it.
_thread_vms = threading.local()


def decision_path(workspace_id: str) -> str:
    """The decision entry point of a workspace as an OPA data path (``sekuire/workspaces/<ws>/decision``)."""
    return f"{workspace_root(workspace_id)}/decision"


def rule_ref(path: str) -> str:
    """``sekuire/workspaces/ws-1/decision`` -> ``data["sekuire"]["workspaces"]["ws-1"]["decision"]``.

    Every segment is quoted, so workspace ids that are not Rego identifiers (or are keywords) are safe.
    """
    segments = path.strip("/").split("/")
    if not path.strip("/") or not all(segments):
        raise InvalidActionError(f"invalid query path {path!r}")
    return "data" + "".join(f"[{json.dumps(segment)}]" for segment in segments)


def _regorus_message(exc: BaseException) -> str:
    # regorus errors carry a Rust backtrace after the first line when RUST_BACKTRACE is set.
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


def _is_regorus_error(exc: BaseException) -> bool:
    # Besides ordinary exceptions, pyo3 raises PanicException (a BaseException) when Rust panics.
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


class Engine(abc.ABC):
    """Answers OPA data queries. ``path`` is slash-separated, as in OPA's ``/v1/data/<path>``."""

    #: How long a decision may be reused before asking again; None: for as long as ``revision`` holds.
    decision_ttl: float | None = None

    @property
    @abc.abstractmethod
    def revision(self) -> str:
        """The policy revision that answers queries; "" when unknown (then nothing is cached). Never does I/O."""

    @property
    def bundles(self) -> dict[str, str]:
        """Bundle name -> revision, for decision logs (OPA's ``bundles`` field)."""
        return {}

    @abc.abstractmethod
    def evaluate(self, path: str, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002 - OPA's name
        """The JSON object at ``data.<path>`` for ``input``; EngineError if there is none or no answer."""

    async def aevaluate(self, path: str, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
        """Async twin; engines without I/O answer inline (cheaper than a thread hop)."""
        return self.evaluate(path, input)

    def close(self) -> None:
        """Release connections or compiled programs; further queries raise EngineUnavailable."""

    async def aclose(self) -> None:
        self.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class EmbeddedEngine(Engine):
    """In-process Rego (regorus' compiled RVM) over a fixed set of modules and data: one revision for life.

    Thread-safe: each thread gets its own VM (see the module docstring). A new
    policy means a new engine; the enforcer's cache notices the new revision.
    """

    def __init__(
        self,
        modules: Mapping[str, str],
        data: Mapping[str, Any],
        *,
        revision: str = "",
        bundle_name: str = "sekuire",
        entry_points: Iterable[str] = (),
    ) -> None:
        """``modules``: file name -> Rego source; ``data``: the whole data document.

        ``entry_points`` are compiled now, so a policy regorus cannot compile fails
        here rather than at its first decision; other paths compile on first use.
        """
        self._id = next(_engine_ids)
        self._modules = sorted(modules.items())
        self._data_json = json.dumps(data)
        self._revision = revision
        self._bundle_name = bundle_name
        self._programs: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._closed = False
        for path in entry_points:
            self._program(path)

    @classmethod
    def from_compiled(cls, compiled: CompiledPolicy) -> EmbeddedEngine:
        # Only the decision is compiled up front (~10 ms); the manifest check compiles on first use.
        return cls(
            compiled.modules,
            compiled.data,
            revision=compiled.revision,
            bundle_name=compiled.workspace_id,
            entry_points=(compiled.decision_path,),
        )

    @classmethod
    def from_policy(cls, policy: Policy) -> EmbeddedEngine:
        """Compile a verified policy in memory (no bundle, no signature: the policy itself was verified)."""
        return cls.from_compiled(compile_policy(policy))

    @classmethod
    def from_bundle(
        cls,
        bundle: str | os.PathLike[str] | bytes,
        *,
        verification_key: str | bytes | os.PathLike[str] | PublicKeyTypes | None = None,
        alg: str | None = None,
        scope: str | None = None,
        allow_unsigned: bool = False,
    ) -> EmbeddedEngine:
        """Load an OPA bundle (a path or its bytes), verified as ``opa run --verification-key`` would.

        ``verification_key``: a PEM public key (text, bytes, a file path or a key object), or
        the secret for HS256; ``alg`` defaults as OPA's does (RS256, or the EC key's ES*).
        A bundle without signatures is refused unless ``allow_unsigned``, and then logged.
        """
        # Imported here: an enforcer compiled from a policy never needs tar or the JWT stack.
        from ..compiler.bundle.roots import check_roots
        from ..compiler.bundle.tarball import load_bundle, read_bundle
        from ..compiler.bundle.verify import verify_bundle

        loaded = read_bundle(bundle, source="<bytes>") if isinstance(bundle, bytes) else load_bundle(bundle)
        if loaded.signed:
            if verification_key is None:
                raise BundleVerificationError("the bundle is signed: pass its verification_key", source=loaded.source)
            if isinstance(verification_key, os.PathLike):
                verification_key = _read_key(verification_key)
            verify_bundle(loaded, key=verification_key, alg=alg, scope=scope)
        elif not allow_unsigned:
            raise BundleVerificationError("the bundle is not signed (allow_unsigned=True to load it anyway)", source=loaded.source)
        else:
            logger.warning("loading the unsigned bundle %s: its content is not verified", loaded.source)
            check_roots(loaded)  # verify_bundle checks the roots of a signed bundle
        workspace = _bundle_workspace(loaded)
        return cls(
            loaded.modules,
            loaded.data,
            revision=loaded.revision,
            bundle_name=workspace or _file_name(loaded.source),
            # A sekuire bundle has a decision to compile now; any other bundle compiles on first query.
            entry_points=[decision_path(workspace)] if workspace else (),
        )

    @property
    def revision(self) -> str:
        return self._revision

    @property
    def bundles(self) -> dict[str, str]:
        return {self._bundle_name: self._revision}

    def _program(self, path: str) -> bytes:
        """The compiled program for ``path`` as bytes (a regorus Program cannot leave its thread; bytes can)."""
        with self._lock:
            if self._closed:
                raise EngineUnavailable("the embedded engine is closed")
            program = self._programs.get(path)
            if program is None:
                ref = rule_ref(path)
                try:
                    program = regorus.Program.compile_from_modules(self._data_json, self._modules, [ref]).serialize_binary()
                except BaseException as exc:
                    if not _is_regorus_error(exc):
                        raise
                    raise EngineResponseError(f"cannot compile {ref}: {_regorus_message(exc)}") from None
                self._programs[path] = program
            return program

    def _thread_entry(self) -> tuple[weakref.ref[EmbeddedEngine], dict[str, tuple[Any, str]]]:
        """This thread's VMs of this engine (entry point -> (Rvm, rule ref))."""
        engines: dict[int, tuple[weakref.ref[EmbeddedEngine], dict[str, tuple[Any, str]]]]
        engines = _thread_vms.__dict__.setdefault("engines", {})
        entry = engines.get(self._id)
        if entry is None:
            # Drop this thread's VMs of engines that are gone or closed, here in the thread that owns them.
            for engine_id, (ref, _) in list(engines.items()):
                engine = ref()
                if engine is None or engine._closed:
                    del engines[engine_id]
            entry = engines[self._id] = (weakref.ref(self), {})
        return entry

    def _vm(self, path: str) -> tuple[Any, str]:
        """This thread's VM for ``path`` and the entry point to run."""
        entry = self._thread_entry()
        vm = entry[1].get(path)
        if vm is None:
            program, partial = regorus.Program.deserialize_binary(self._program(path))
            if partial:
                raise EngineUnavailable(f"the compiled program for {path} is incomplete")
            machine = regorus.Rvm()
            machine.load_program(program)
            machine.set_data_json(self._data_json)
            vm = entry[1][path] = (machine, rule_ref(path))
        return vm

    def evaluate(self, path: str, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
        if self._closed:
            raise EngineUnavailable("the embedded engine is closed")
        try:
            input_json = json.dumps(input, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidActionError(f"input is not JSON: {exc}") from None
        try:
            vm, ref = self._vm(path)
            vm.set_input_json(input_json)
            output = vm.execute_entry_point(ref)
        except SekuireRuntimeError:
            raise
        except BaseException as exc:
            if not _is_regorus_error(exc):
                raise
            # A VM that failed (or panicked) mid-run may be left inconsistent: this thread builds a new one.
            self._thread_entry()[1].pop(path, None)
            message = _regorus_message(exc)
            if _INSTRUCTION_LIMIT not in message:
                raise EngineResponseError(f"{path}: {message}") from None
            # The RVM stops at a fixed instruction budget (25,000 in regorus 0.13) that big inputs, such as a
            # manifest with hundreds of tools, can need more of; the interpreter has no such budget.
            output = self._interpret(path, input_json)
        if output.strip() == _UNDEFINED:
            raise EngineResponseError(f"{path}: undefined (no rule at this path answered)")
        result = json.loads(output)
        if not isinstance(result, dict):
            raise EngineResponseError(f"{path}: expected an object, got {type(result).__name__}")
        return result

    def _interpret(self, path: str, input_json: str) -> str:
        """Evaluate with this thread's regorus interpreter for this engine (built on first use)."""
        entry = self._thread_entry()[1]
        interpreter = entry.get(_INTERPRETER)
        try:
            if interpreter is None:
                interpreter = regorus.Engine()
                for name, source in self._modules:
                    interpreter.add_policy(name, source)
                interpreter.add_data_json(self._data_json)
                entry[_INTERPRETER] = interpreter
            interpreter.set_input_json(input_json)
            return interpreter.eval_rule_as_json(rule_ref(path))
        except BaseException as exc:
            if not _is_regorus_error(exc):
                raise
            entry.pop(_INTERPRETER, None)
            raise EngineResponseError(f"{path}: {_regorus_message(exc)}") from None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._programs.clear()
        getattr(_thread_vms, "engines", {}).pop(self._id, None)


_INSTRUCTION_LIMIT = "exceeded maximum instruction limit"
_INTERPRETER = "<interpreter>"  # the key of a thread's interpreter among its VMs (paths never start with "<")


def _read_key(path: os.PathLike[str]) -> bytes:
    try:
        return read_limited(path, _MAX_KEY_BYTES)
    except OSError as exc:
        raise BundleVerificationError(f"cannot read the verification key: {exc.strerror or exc}", source=os.fspath(path)) from None


def _bundle_workspace(bundle: Bundle) -> str | None:
    """The workspace of a bundle ``sekuire policy build`` wrote (its manifest metadata names it)."""
    metadata = (bundle.manifest or {}).get("metadata")
    workspace = metadata.get("workspace_id") if isinstance(metadata, dict) else None
    return workspace if isinstance(workspace, str) and workspace else None


def _file_name(source: str) -> str:
    return Path(source).name if source not in ("", "<bytes>") else "bundle"
