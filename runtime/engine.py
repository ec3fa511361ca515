"""The engine seam: one ``evaluate(path, input)`` between the enforcer's policy and whoever answers.

The enforcer owns policy (normalisation, caching, rate limits, callbacks,
fail-closed); an engine does one thing, answer an OPA data query, the way an
httpx transport handles one request. Two engines: :class:`EmbeddedEngine`
(in-process Rego through regorus, the default) and
:class:`~sekuire.runtime.opa.OPAEngine` (a real OPA over its REST API).

Every engine failure surfaces as :class:`EngineError`, which the enforcer turns
into a deny. The regorus binding (``sekuire.runtime._regorus``, built from
``rust/`` over the upstream ``regorus`` crate) is used only in this module.

Why one shared ``_regorus.Policy`` per engine (numbers below): it compiles
each entry point once into an immutable RVM program and evaluates on a pool of
VMs with the GIL released, so any number of threads share it, without
per-thread state, locks in Python or copies of the program.
"""

from __future__ import annotations

import abc
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..compiler.errors import BundleVerificationError
from ..compiler.files import read_limited
from ..compiler.policy.document import Policy
from ..compiler.rego.compile import CompiledPolicy, compile_policy
from ..compiler.rego.library import bundle_name, workspace_root
from ..compiler.version import REGORUS_VERSION
from ._regorus import CompileError as RegoCompileError
from ._regorus import Policy as RegoPolicy
from ._regorus import RegorusError, UndefinedError
from .decision import Decision, DecisionMemo
from .errors import EngineResponseError, EngineUnavailable, InvalidActionError

if TYPE_CHECKING:
    from ..compiler.bundle.keys import PublicKey
    from ..compiler.bundle.tarball import Bundle

__all__ = ["EmbeddedEngine", "Engine", "decision_path", "rule_ref", "sibling_path"]

logger = logging.getLogger(__name__)

# Measured on the bench workload's 10,000-entry policy (tests/bench; regorus 0.14.1 through _regorus,
# CPython 3.11, a 2-core VM shared with other work, so +-30%):
#   one decision, GIL released inside: tool ~16 us, api ~15, rate_limit ~19, model ~45, network ~55,
#                    filesystem ~65 (regorus 0.13 through gordon-to-regorus: ~55 us on the six-type mix
#                    where this binding takes ~45); the Rego library of the merge with main costs more:
#                    tool ~24, api ~24, rate_limit ~18, model ~54, network ~56, filesystem ~69;
#   RUST_BACKTRACE=1: no difference (the six decisions sum to 250 us with it, 246-250 us without);
#   binding overhead (trivial rule): 2.0 us with Python objects in and out, 7.0 us with JSON text
#                    (a reused encoder, evaluate_json, json.loads), so objects it is;
#   load + compile the decision: 8 ms (10 entries) to 24 ms (10,000); first decision 0.2-0.6 ms;
#   tool decisions on 1 / 2 / 8 threads sharing one engine: ~60k / ~100k / ~67k per second (1.95 CPUs
#                    busy at 2 threads; at 8, GIL hand-offs between Python threads cost the difference).

_MAX_KEY_BYTES = 1 << 16


def decision_path(workspace_id: str) -> str:
    """The decision entry point of a workspace as an OPA data path (``sekuire/workspaces/<ws>/decision``)."""
    return f"{workspace_root(workspace_id)}/decision"


def sibling_path(path: str, entry_point: str) -> str:
    """Another entry point of the workspace whose decision is at ``path`` (``.../decision`` -> ``.../explain``)."""
    return f"{path.rsplit('/', 1)[0]}/{entry_point}"


def rule_ref(path: str) -> str:
    """``sekuire/workspaces/ws-1/decision`` -> ``data["sekuire"]["workspaces"]["ws-1"]["decision"]``.

    Every segment is quoted, so workspace ids that are not Rego identifiers (or are keywords) are safe.
    """
    segments = path.strip("/").split("/")
    if not path.strip("/") or not all(segments):
        raise InvalidActionError(f"invalid query path {path!r}")
    return "data" + "".join(f"[{json.dumps(segment)}]" for segment in segments)


def _first_line(exc: BaseException) -> str:
    """One line: regorus' "error: ..." line and its "--> file:line:col" where it quotes the source."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    error = next((line for line in lines if line.startswith("error:")), None)
    if error is None:
        return (lines[0] if lines else type(exc).__name__)[:300]
    where = next((line[3:].strip() for line in lines if line.startswith("-->")), "")
    return (error.removeprefix("error:").strip() + (f" (at {where})" if where else ""))[:300]


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

    @property
    def version(self) -> str:
        """The version of the engine that decides, as OPA's decision logs put it in ``labels.version``."""
        return ""

    def decision_id(self) -> str | None:
        """The ``decision_id`` the engine gave the latest query of this thread or task (OPA does when its decision
        logging is on; the enforcer's event then carries the same id), else None."""
        return None

    @abc.abstractmethod
    def evaluate(self, path: str, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002 - OPA's name
        """The JSON object at ``data.<path>`` for ``input``; EngineError if there is none or no answer."""

    async def aevaluate(self, path: str, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
        """Async twin; engines without I/O answer inline (cheaper than a thread hop)."""
        return self.evaluate(path, input)

    def decide(self, path: str, input: Mapping[str, Any]) -> Decision:  # noqa: A002
        """:meth:`evaluate` read as a :class:`Decision` (EngineError for an answer off the contract).

        The enforcer's cold path. Engines that receive answers as text override it
        to reuse the decision decoded from an identical answer (:class:`DecisionMemo`).
        """
        return Decision.from_result(self.evaluate(path, input))

    async def adecide(self, path: str, input: Mapping[str, Any]) -> Decision:  # noqa: A002
        """Async twin of :meth:`decide`."""
        return Decision.from_result(await self.aevaluate(path, input))

    def close(self) -> None:
        """Release connections or compiled programs; further queries raise EngineUnavailable."""

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        self.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class EmbeddedEngine(Engine):
    """In-process Rego (regorus' compiled RVM) over a fixed set of modules and data: one revision for life.

    Thread-safe, and threads evaluate in parallel: the GIL is released while
    regorus runs (see the module docstring). A new policy means a new engine;
    the enforcer's cache notices the new revision.
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
        self._revision = revision
        self._bundle_name = bundle_name
        self._refs: dict[str, str] = {}
        self._lock = threading.Lock()
        self._decoded: DecisionMemo[Decision] = DecisionMemo()
        # A subclass that overrides evaluate (to count, log or rewrite queries) keeps seeing every one.
        self._text_path = type(self).evaluate is EmbeddedEngine.evaluate
        try:
            self._policy: RegoPolicy | None = RegoPolicy(sorted(modules.items()), json.dumps(data))
        except RegorusError as exc:
            raise EngineResponseError(f"cannot load the policy: {_first_line(exc)}") from None
        for path in entry_points:
            self._compile(path)

    @classmethod
    def from_compiled(cls, compiled: CompiledPolicy) -> EmbeddedEngine:
        """An engine over a policy compiled in memory (:func:`compile_policy`)."""
        # Only the decision is compiled up front (~10 ms); the manifest check compiles on first use.
        return cls(
            compiled.modules,
            compiled.data,
            revision=compiled.revision,
            bundle_name=bundle_name(compiled.workspace_id),
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
        verification_key: str | bytes | os.PathLike[str] | PublicKey | None = None,
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
            bundle_name=bundle_name(workspace) if workspace else _file_name(loaded.source),
            # A sekuire bundle has a decision to compile now; any other bundle compiles on first query.
            entry_points=[decision_path(workspace)] if workspace else (),
        )

    @property
    def revision(self) -> str:
        """The revision of the loaded bundle (the policy's, for a compiled policy)."""
        return self._revision

    @property
    def bundles(self) -> dict[str, str]:
        """``{bundle name: revision}`` of what this engine answers from."""
        return {self._bundle_name: self._revision}

    @property
    def version(self) -> str:
        """``regorus-<version>``: the Rego engine inside."""
        return f"regorus-{REGORUS_VERSION}"

    def _live(self) -> RegoPolicy:
        policy = self._policy
        if policy is None:
            raise EngineUnavailable("the embedded engine is closed")
        return policy

    def _rule(self, path: str) -> str:
        ref = self._refs.get(path)
        if ref is None:
            ref = rule_ref(path)
            with self._lock:
                if len(self._refs) < _MAX_REFS:
                    self._refs[path] = ref
        return ref

    def _compile(self, path: str) -> None:
        ref = self._rule(path)
        try:
            self._live().compile(ref)
        except RegorusError as exc:
            raise EngineResponseError(f"cannot compile {ref}: {_first_line(exc)}") from None

    def evaluate(self, path: str, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
        """Evaluate the rule at data path ``path`` for ``input``; EngineError on any failure."""
        ref = self._rule(path)
        try:
            result = self._live().evaluate(ref, input)
        except (RegorusError, TypeError, ValueError) as exc:
            raise _engine_error(exc, path, ref) from None
        if not isinstance(result, dict):
            raise EngineResponseError(f"{path}: expected an object, got {type(result).__name__}")
        return result

    def decide(self, path: str, input: Mapping[str, Any]) -> Decision:  # noqa: A002
        """:meth:`evaluate` as a :class:`Decision`, reusing the one decoded from an identical answer.

        regorus writes the answer as JSON text (keys sorted, so equal answers are equal
        texts); a text seen before skips building Python objects and checking them again.
        """
        if not self._text_path:
            return Decision.from_result(self.evaluate(path, input))
        ref = self._rule(path)
        try:
            text = self._live().evaluate_text(ref, input)
        except (RegorusError, TypeError, ValueError) as exc:
            raise _engine_error(exc, path, ref) from None
        decision = self._decoded.get(text)
        if decision is None:
            result = json.loads(text)
            if not isinstance(result, dict):
                raise EngineResponseError(f"{path}: expected an object, got {type(result).__name__}")
            decision = Decision.from_result(result)
            self._decoded.put(text, decision)
        return decision

    def close(self) -> None:
        """Release the compiled program; later queries raise EngineUnavailable."""
        # Evaluations under way keep their reference to the policy and finish; regorus frees it after them.
        self._policy = None


def _engine_error(exc: Exception, path: str, ref: str) -> Exception:
    """A regorus failure as an EngineError; a TypeError or ValueError (raised only by the conversion of the
    input, with json.dumps' wording) as InvalidActionError."""
    if isinstance(exc, UndefinedError):
        return EngineResponseError(f"{path}: undefined (no rule at this path answered)")
    if isinstance(exc, RegoCompileError):
        return EngineResponseError(f"cannot compile {ref}: {_first_line(exc)}")
    if isinstance(exc, RegorusError):
        return EngineResponseError(f"{path}: {_first_line(exc)}")
    return InvalidActionError(f"input is not JSON: {exc}")


# Entry points remembered per engine (paths come from the enforcer: a handful; the bound is for direct callers).
_MAX_REFS = 1024


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
