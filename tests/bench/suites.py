"""The row groups of the issue, each a method of :class:`Bench` that measures and adds rows to the report.

Rows that compare with an anchor measure the anchor first if this run has not
(``--only embedded`` still measures the OPA REST and ``opa bench`` rows it needs).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sekuire.compiler import Policy, load_policy
from sekuire.compiler.bundle.signing import BundleSigner
from sekuire.compiler.bundle.tarball import build_bundle
from sekuire.compiler.rego.compile import compile_policy
from sekuire.runtime import EmbeddedEngine, Engine, OPAEngine, PolicyEnforcer

from ..conftest import OPAServer
from .opa import RestClient, activate, opa_bench, peak_rss_kib, run_timed
from .report import Report, Row
from .stats import Summary, growth_exponent, time_calls, time_interleaved
from .workload import (
    ACTIONS,
    AGENT_ID,
    CACHEABLE_TYPES,
    SIGNING_ALG,
    Workload,
    enforce_call,
    engine_input,
)

__all__ = ["GROUPS", "HEADINGS", "Bench", "Settings"]

#: ``--only`` names and table headings, in the order a full run measures them.
HEADINGS = {
    "anchors": "1. anchors: the real OPA (10,000-entry policy)",
    "embedded": "2. embedded engine: PolicyEnforcer over regorus in-process (our binding, rust/)",
    "external": "3. external engine: PolicyEnforcer over OPAEngine (OPA REST)",
    "throughput": "4. throughput: tool decisions per second",
    "lookups": "5a. lookup cost against list size (embedded, cache off)",
    "compile": "5b. compile scaling",
    "memory": "6. memory",
    "startup": "7. CLI start-up (interpreter included; anchor: `opa version`)",
    "batch": "8. batch checks: check_many over a tool listing against single decisions",
}
GROUPS = tuple(HEADINGS)

_ROOT = Path(__file__).resolve().parents[2]

Factory = Callable[[], tuple[Callable[[], object], Callable[[], None]]]


@dataclass(frozen=True)
class Settings:
    """How much to measure; ``quick`` is a smoke run (its numbers are too noisy to quote)."""

    quick: bool
    actions: tuple[str, ...]
    main_size: int = 10_000
    sizes: tuple[int, ...] = (10, 1_000, 10_000, 100_000)
    lookup_sizes: tuple[int, ...] = (10, 100_000)
    threads: tuple[int, ...] = (1, 2, 8)
    warmup: int = 200
    cold_iterations: int = 5_000
    warm_iterations: int = 20_000
    rest_iterations: int = 2_000
    throughput_seconds: float = 0.5
    #: Runs of each throughput row and of each one-shot duration (builds, activations, enforcer starts).
    repeats: int = 5

    @classmethod
    def make(cls, *, quick: bool, actions: tuple[str, ...]) -> Settings:
        if not quick:
            return cls(quick=False, actions=actions)
        return cls(
            quick=True,
            actions=actions,
            sizes=(10, 1_000),
            lookup_sizes=(10, 1_000),
            threads=(1, 2),
            warmup=20,
            cold_iterations=500,
            warm_iterations=2_000,
            rest_iterations=200,
            throughput_seconds=0.2,
            repeats=1,
        )


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


class Bench:
    """One run: the workload, the OPA servers it started (stopped by :meth:`close`), the report it fills."""

    def __init__(self, opa: str, workload: Workload, settings: Settings, report: Report) -> None:
        self.opa = opa
        self.workload = workload
        self.settings = settings
        self.report = report
        self._cleanup = contextlib.ExitStack()

    def close(self) -> None:
        self._cleanup.close()

    def run(self, groups: tuple[str, ...]) -> None:
        for group in groups:
            progress(f"group {group}")
            getattr(self, group)()

    # -- shared pieces -------------------------------------------------------------------------------

    @functools.cached_property
    def main_policy(self) -> Policy:
        return self.workload.policy(self.settings.main_size)

    @functools.cached_property
    def main_engine(self) -> EmbeddedEngine:
        return self._cleanup.enter_context(EmbeddedEngine.from_policy(self.main_policy))

    @functools.cached_property
    def server(self) -> OPAServer:
        """OPA serving the signed main bundle, as a sidecar would."""
        return self._serve(self.settings.main_size)

    def _serve(self, size: int) -> OPAServer:
        server, _ = activate(self.opa, self.workload.bundle(size), self.workload.keys.public_pem)
        self._cleanup.callback(server.stop)
        return server

    def _enforcer(self, engine: Engine | None = None, *, cache: bool) -> PolicyEnforcer:
        return PolicyEnforcer(self.main_policy, engine=engine or self.main_engine, cache=cache, agent_id=AGENT_ID)

    def _add(self, group: str, row_id: str, label: str, unit: str, value: float, **fields: object) -> Row:
        return self.report.add(Row(row_id, group, label, unit, value, **fields))  # type: ignore[arg-type]

    def _latency(self, group: str, row_id: str, label: str, call: Callable[[], object], iterations: int) -> Row:
        progress(f"  {row_id}")
        return self._summary(group, row_id, label, time_calls(call, warmup=self.settings.warmup, iterations=iterations))

    def _summary(self, group: str, row_id: str, label: str, summary: Summary) -> Row:
        return self._add(group, row_id, label, "us", summary.median, p99=summary.p99, n=summary.n, extra={"mean": summary.mean})

    def _rate(self, row_id: str, label: str, measure: Callable[[], float]) -> Row:
        """The median of ``repeats`` runs: short runs of GIL-bound threads vary by tens of percent."""
        progress(f"  {row_id}")
        rates = [measure() for _ in range(self.settings.repeats)]
        return self._add(
            "throughput", row_id, label, "ops/s", statistics.median(rates), higher_is_better=True, extra={"runs": rates}
        )

    def _median(self, measure: Callable[[], float]) -> float:
        return statistics.median(measure() for _ in range(self.settings.repeats))

    # -- 8. batch checks (issue 13.5) ------------------------------------------------------------

    def batch(self) -> None:
        enforcer = self._enforcer(cache=False)
        names = [f"tool_{index:06d}" for index in range(190)] + ["file_delete", "shell"] * 5  # 190 allowed, 10 denied
        single = self._latency("batch", "batch/20-singles", "20 single tool decisions (cache off)",
                               lambda: [enforcer.check({"type": "tool", "name": n}) for n in names[:20]],
                               max(20, self.settings.cold_iterations // 50))
        actions = [{"type": "tool", "name": name} for name in names]
        many = self._latency("batch", "batch/check-many-200", "check_many of 200 tool names (cache off)",
                             lambda: enforcer.check_many(actions), max(20, self.settings.cold_iterations // 50))
        many.aim("costs less than 20 single decisions", many.compare(single) < 1)

    # -- 7. start-up (rows timed in turn with their anchor) -------------------------------------------

    def startup(self) -> None:
        sekuire = str(Path(sys.executable).with_name("sekuire"))
        runs = max(10, self.settings.repeats * 4)
        commands = {
            "opa-version": [self.opa, "version"],
            "python": [sys.executable, "-c", "pass"],  # the interpreter's own floor
            "help": [sekuire, "--help"],
            "version": [sekuire, "--version"],
        }
        timings: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):  # interleaved: load on the machine hits every command alike
            for name, command in commands.items():
                timings[name].append(run_timed(command) * 1e3)
        anchor = self._add("startup", "startup/opa-version", "`opa version`", "ms", statistics.median(timings["opa-version"]))
        labels = (("python", "`python -c pass` (no sekuire)"), ("help", "`sekuire --help`"), ("version", "`sekuire --version`"))
        for name, label in labels:
            row = self._add("startup", f"startup/{name}", label, "ms", statistics.median(timings[name]), n=runs)
            row.compare(anchor)

    # -- 1. anchors ----------------------------------------------------------------------------------

    def anchors(self) -> None:
        for kind in self.settings.actions:
            self.rest_anchor(kind)
            self.bench_anchor(kind)

    def rest_anchor(self, kind: str) -> Row:
        row = self.report.get(f"opa-rest/{kind}")
        if row is not None:
            return row
        client = RestClient(self.server.port, self.workload.decision_path)
        try:
            input_ = engine_input(kind)
            if client.decide(input_).get("allow") is not True:
                raise RuntimeError(f"OPA denies the {kind} probe action")
            return self._latency(
                "anchors",
                f"opa-rest/{kind}",
                f"OPA REST {kind}: POST /v1/data/.../decision on a keep-alive http.client connection",
                functools.partial(client.decide, input_),
                self.settings.rest_iterations,
            )
        finally:
            client.close()

    def bench_anchor(self, kind: str) -> Row:
        row = self.report.get(f"opa-bench/{kind}")
        if row is not None:
            return row
        rest = self.rest_anchor(kind)
        progress(f"  opa-bench/{kind}")
        bundle = self.workload.bundle(self.settings.main_size)
        result = opa_bench(self.opa, bundle, self.workload.input_file(kind), self.workload.decision_path)
        row = self._add(
            "anchors",
            f"opa-bench/{kind}",
            f"`opa bench` {kind}: OPA in-process evaluation",
            "us",
            result["ns_per_op"] / 1000,
            p99=result["eval_p99_ns"] / 1000,
            n=int(result["n"]),
            extra=result,
            note="mean ns/op; p99 is OPA's query-eval timer",
        )
        row.compare(rest)
        return row

    # -- 2. embedded ---------------------------------------------------------------------------------

    def embedded(self) -> None:
        anchors = {kind: (self.rest_anchor(kind), self.bench_anchor(kind)) for kind in self.settings.actions}
        cold = self._enforcer(cache=False)
        warm = self._enforcer(cache=True)
        for kind, (rest, bench) in anchors.items():
            row = self._latency(
                "embedded",
                f"embedded-cold/{kind}",
                f"{kind}, decision cache off",
                enforce_call(cold, kind),
                self.settings.cold_iterations,
            )
            row.aim("at least 20x faster than OPA REST", row.compare(rest) <= 1 / 20)
            row.aim("at least 5x faster than opa bench", row.compare(bench) <= 1 / 5)
        for kind in (kind for kind in anchors if kind in CACHEABLE_TYPES):
            call = enforce_call(warm, kind)
            call()  # fills the cache: every timed call is a hit
            row = self._latency(
                "embedded", f"embedded-warm/{kind}", f"{kind}, decision cache on (hits)", call, self.settings.warm_iterations
            )
            row.aim("at least 100x faster than OPA REST", row.compare(anchors[kind][0]) <= 1 / 100)
        if warm.cache is not None and warm.cache.misses > len(CACHEABLE_TYPES):
            raise RuntimeError(f"the warm rows missed the decision cache {warm.cache.misses} times")

    # -- 3. external ---------------------------------------------------------------------------------

    def external(self) -> None:
        """Each row is timed interleaved with its own raw REST anchor, call for call, on the same OPA."""
        client = RestClient(self.server.port, self.workload.decision_path)
        with OPAEngine(self.server.url) as engine:
            enforcer = self._enforcer(engine, cache=False)
            for kind in self.settings.actions:
                progress(f"  external/{kind}")
                anchor, external = time_interleaved(
                    [functools.partial(client.decide, engine_input(kind)), enforce_call(enforcer, kind)],
                    warmup=self.settings.warmup,
                    iterations=self.settings.rest_iterations,
                )
                paired = self._summary(
                    "external", f"opa-rest-paired/{kind}", f"OPA REST {kind}, timed in turn with the row below", anchor
                )
                row = self._summary("external", f"external/{kind}", f"{kind}, decision cache off", external)
                row.aim("at most 1.15x OPA REST", row.compare(paired) <= 1.15)
        client.close()

    # -- 4. throughput -------------------------------------------------------------------------------

    def throughput(self) -> None:
        tool = ACTIONS["tool"]["name"]
        input_ = engine_input("tool")
        port, path = self.server.port, self.workload.decision_path
        seconds = self.settings.throughput_seconds

        def rest() -> tuple[Callable[[], object], Callable[[], None]]:
            client = RestClient(port, path)  # a connection per thread, as a pool would give
            return functools.partial(client.decide, input_), client.close

        with OPAEngine(self.server.url) as engine:
            enforcers = {
                "embedded-cold": self._enforcer(cache=False),
                "embedded-warm": self._enforcer(cache=True),
                "external": self._enforcer(engine, cache=False),
            }
            for threads in self.settings.threads:
                anchor = self._rate(
                    f"tput/opa-rest/{threads}t",
                    f"OPA REST, {threads} thread(s), a connection each",
                    functools.partial(thread_rate, rest, threads, seconds),
                )
                # The engine alone (EmbeddedEngine.evaluate), to tell its scaling from the enforcer's Python.
                raw = _shared(functools.partial(self.main_engine.evaluate, path, input_))
                self._rate(
                    f"tput/engine/{threads}t",
                    f"EmbeddedEngine.evaluate alone, {threads} thread(s)",
                    functools.partial(thread_rate, raw, threads, seconds),
                ).compare(anchor)
                for name, enforcer in enforcers.items():
                    shared = _shared(functools.partial(enforcer.enforce_tool, tool))
                    self._rate(
                        f"tput/{name}/{threads}t",
                        f"{name}, {threads} thread(s)",
                        functools.partial(thread_rate, shared, threads, seconds),
                    ).compare(anchor)
                self._rate(
                    f"tput/external-async/{threads}c",
                    f"external, asyncio, {threads} concurrent task(s)",
                    functools.partial(async_rate, self.main_policy, self.server.url, threads, seconds),
                ).compare(anchor)
        self._scaling()

    def _scaling(self) -> None:
        """Thread scaling: each multi-thread rate against the same row at 1 thread, with the issue's targets."""
        aims = {
            ("engine", 2): ("at least 1.5x 1 thread", 1.5),
            ("engine", 8): ("at least 1 thread", 1.0),
            ("embedded-cold", 2): ("at least 1.5x 1 thread", 1.5),
            ("embedded-cold", 8): ("at least 1 thread", 1.0),
            ("embedded-warm", 8): ("at least 0.9x 1 thread", 0.9),
        }
        for name in ("engine", "embedded-cold", "embedded-warm", "external"):
            single = self.report.get(f"tput/{name}/1t")
            if single is None:
                continue
            for threads in self.settings.threads:
                row = self.report.get(f"tput/{name}/{threads}t")
                if row is None or threads == 1:
                    continue
                ratio = row.compare(single)
                aim = aims.get((name, threads))
                if aim is not None:
                    row.aim(aim[0], ratio >= aim[1])


    # -- 5a. lookups ---------------------------------------------------------------------------------

    def lookups(self) -> None:
        smallest, largest = min(self.settings.lookup_sizes), max(self.settings.lookup_sizes)
        for size in self.settings.lookup_sizes:
            policy = self.workload.policy(size)
            with EmbeddedEngine.from_policy(policy) as engine:
                enforcer = PolicyEnforcer(policy, engine=engine, cache=False, agent_id=AGENT_ID)
                for kind in self.settings.actions:
                    row = self._latency(
                        "lookups",
                        f"lookup/{size}/{kind}",
                        f"{kind}, {size:,}-entry policy",
                        enforce_call(enforcer, kind),
                        self.settings.cold_iterations,
                    )
                    anchor = self.report.get(f"lookup/{smallest}/{kind}")
                    if anchor is not None and anchor is not row:
                        ratio = row.compare(anchor)
                        if size == largest:
                            row.aim(f"about the cost at {smallest} entries (at most 1.25x): no list scans", ratio <= 1.25)

    # -- 5b. compile ---------------------------------------------------------------------------------

    def compile(self) -> None:
        timings: dict[str, dict[int, float]] = {"build": {}, "stages": {}, "opa-build": {}, "activate": {}}
        for size in self.settings.sizes:
            progress(f"  build/{size}")
            self._compile_size(size, timings)
        self._growth(timings)

    def _compile_size(self, size: int, timings: dict[str, dict[int, float]]) -> None:
        workload, keys, largest = self.workload, self.workload.keys, size == max(self.settings.sizes) >= 100_000
        env = workload.environment()
        cli_out = workload.directory / f"cli-{size}.tar.gz"
        opa_out = workload.directory / f"opa-{size}.tar.gz"
        sign = ["--signing-key", str(keys.private_pem), "--signing-alg", SIGNING_ALG]
        sekuire = [str(Path(sys.executable).with_name("sekuire")), "policy", "build", "--keyring", str(workload.keyring.path)]
        build_command = [*sekuire, "--file", str(workload.policy_file(size)), "--out", str(cli_out), *sign]
        opa_command = [self.opa, "build", "--bundle", str(workload.bundle_dir(size)), "--output", str(opa_out), *sign]

        build = timings["build"][size] = self._median(lambda: run_timed(build_command, env=env))
        if cli_out.read_bytes() != workload.bundle(size).read_bytes():
            raise RuntimeError(f"the CLI's {size}-entry bundle differs from the harness's")
        opa_build = timings["opa-build"][size] = self._median(lambda: run_timed(opa_command, env=env))
        stages = self._stages(size)
        timings["stages"][size] = sum(stages.values())
        activation = timings["activate"][size] = self._median(lambda: self._activation(size))
        enforcer_start = self._median(lambda: _time(lambda: PolicyEnforcer(workload.policy(size), agent_id=AGENT_ID).close()))

        opa_row = self._add(
            "compile",
            f"opa-build/{size}",
            f"`opa build` of the same files, signed {SIGNING_ALG}, {size:,} entries",
            "s",
            opa_build,
        )
        row = self._add(
            "compile",
            f"build/{size}",
            f"`sekuire policy build`, signed {SIGNING_ALG}, {size:,} entries (CLI process)",
            "s",
            build,
        )
        row.compare(opa_row)
        if largest:
            row.aim("under 5 s", build < 5)
        self._add(
            "compile",
            f"build-stages/{size}",
            f"in-process: load+verify {stages['load']:.3f} s, compile {stages['compile']:.3f} s, "
            f"bundle+sign {stages['bundle']:.3f} s",
            "s",
            timings["stages"][size],
            extra=stages,
        ).compare(opa_row)
        opa_size = self._add(
            "compile", f"opa-bundle/{size}", f"`opa build` bundle, {size:,} entries", "KiB", opa_out.stat().st_size / 1024
        )
        policy_kib = workload.policy_file(size).stat().st_size / 1024
        self._add(
            "compile",
            f"bundle/{size}",
            f"sekuire bundle, {size:,} entries (policy.json {policy_kib:,.0f} KiB)",
            "KiB",
            cli_out.stat().st_size / 1024,
        ).compare(opa_size)
        row = self._add(
            "compile",
            f"activate/{size}",
            f"OPA activation: `opa run --bundle` spawn to /health?bundles 200, {size:,} entries",
            "s",
            activation,
        )
        anchor = self.report.get(f"activate/{min(self.settings.sizes)}")
        if anchor is not None and anchor is not row:
            row.compare(anchor)
        if largest:
            row.aim("under 2 s", activation < 2)
        self._add(
            "compile",
            f"enforcer-start/{size}",
            f"PolicyEnforcer(policy) ready to decide: compile + RVM program, {size:,} entries",
            "s",
            enforcer_start,
        ).compare(row)

    def _activation(self, size: int) -> float:
        server, seconds = activate(self.opa, self.workload.bundle(size), self.workload.keys.public_pem)
        try:
            client = RestClient(server.port, self.workload.decision_path)
            if client.decide(engine_input("tool")).get("allow") is not True:
                raise RuntimeError(f"OPA denies the tool probe on the {size}-entry bundle")
            client.close()
        finally:
            server.stop()
        return seconds

    def _stages(self, size: int) -> dict[str, float]:
        """The CLI's work without process start and imports: read+verify, compile, write+sign the bundle."""
        path, keyring = self.workload.policy_file(size), self.workload.keyring
        signer = BundleSigner.from_file(self.workload.keys.private_pem, alg=SIGNING_ALG)
        policy = load_policy(path, keyring)
        compiled = compile_policy(policy)
        return {
            "load": self._median(lambda: _time(lambda: load_policy(path, keyring))),
            "compile": self._median(lambda: _time(lambda: compile_policy(policy))),
            "bundle": self._median(lambda: _time(lambda: build_bundle(compiled, signer=signer))),
        }

    def _growth(self, timings: dict[str, dict[int, float]]) -> None:
        """k in time ~ N^k between the two largest sizes, where fixed costs no longer hide the slope."""
        sizes = sorted(size for size in self.settings.sizes if size >= 1_000)
        if len(sizes) < 2:
            return
        low, high = sizes[-2:]
        for name, label in (
            ("build", "`sekuire policy build` CLI"),
            ("stages", "sekuire in-process load+compile+bundle"),
            ("opa-build", "`opa build`"),
            ("activate", "OPA activation"),
        ):
            series = timings[name]
            k = growth_exponent([low, high], [series[low], series[high]])
            fit = growth_exponent(sizes, [series[size] for size in sizes])
            per_thousand = (series[high] - series[low]) / ((high - low) / 1000)
            row = self._add(
                "compile",
                f"growth/{name}",
                f"{label}: time ~ N^k from {low:,} to {high:,} entries; {per_thousand * 1000:.1f} ms per 1,000 entries "
                f"(fit over {sizes[0]:,}..{high:,}: k={fit:.2f})",
                "k",
                k,
                extra={"fit_all": fit, "seconds_per_1000_entries": per_thousand},
            )
            if name == "stages":  # the CLI's interpreter start would make any growth look sublinear
                row.aim("close to linear (k <= 1.15)", k <= 1.15)

    # -- 6. memory -----------------------------------------------------------------------------------

    def memory(self) -> None:
        sizes = dict.fromkeys(
            [self.settings.main_size] if self.settings.quick else [self.settings.main_size, max(self.settings.sizes)]
        )
        actions = json.dumps([ACTIONS[kind] for kind in self.settings.actions if kind in CACHEABLE_TYPES] or [ACTIONS["tool"]])
        for size in sizes:
            progress(f"  rss/{size}")
            server = self.server if size == self.settings.main_size else self._serve(size)
            client = RestClient(server.port, self.workload.decision_path)
            for kind in self.settings.actions:
                client.decide(engine_input(kind))
            client.close()
            assert server.proc is not None
            opa = self._add(
                "memory",
                f"rss/opa/{size}",
                f"OPA server holding the {size:,}-entry bundle (VmHWM)",
                "MiB",
                peak_rss_kib(server.proc.pid) / 1024,
            )
            probe = probe_rss(self.workload, size, actions)
            self._add(
                "memory",
                f"rss/enforcer/{size}",
                f"agent process, embedded enforcer of the {size:,}-entry policy "
                f"(VmHWM; {probe['imports_kib'] / 1024:.0f} MiB after imports)",
                "MiB",
                probe["peak_kib"] / 1024,
                extra=probe,
            ).compare(opa)


def _shared(call: Callable[[], object]) -> Factory:
    """Every thread calls the same ``call`` (one enforcer shared by the threads, as an agent would)."""
    return lambda: (call, _nothing)


def _nothing() -> None:
    pass


def _time(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def thread_rate(make: Factory, threads: int, seconds: float) -> float:
    """Calls per second of ``threads`` threads, each running its own ``make()`` call for ``seconds`` after a warm-up."""
    barrier = threading.Barrier(threads + 1)
    counts = [0] * threads
    errors: list[BaseException] = []

    def work(index: int) -> None:
        call, cleanup = make()
        try:
            for _ in range(20):
                call()
            barrier.wait()
            clock, done = time.perf_counter, 0
            end = clock() + seconds
            while clock() < end:
                call()
                done += 1
            counts[index] = done
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:  # re-raised by the measuring thread
            errors.append(exc)
            barrier.abort()
        finally:
            cleanup()

    workers = [threading.Thread(target=work, args=(index,), daemon=True) for index in range(threads)]
    for worker in workers:
        worker.start()
    start = time.perf_counter()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
        start = time.perf_counter()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return sum(counts) / (time.perf_counter() - start)


def async_rate(policy: Policy, url: str, concurrency: int, seconds: float) -> float:
    """Tool decisions per second of ``concurrency`` tasks sharing one OPAEngine on a new event loop."""
    return asyncio.run(_async_rate(policy, url, concurrency, seconds))


async def _async_rate(policy: Policy, url: str, concurrency: int, seconds: float) -> float:
    engine = OPAEngine(url)
    try:
        enforcer = PolicyEnforcer(policy, engine=engine, cache=False, agent_id=AGENT_ID)
        tool = ACTIONS["tool"]["name"]
        await asyncio.gather(*(enforcer.aenforce_tool(tool) for _ in range(concurrency * 10)))
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds

        async def worker() -> int:
            done = 0
            while loop.time() < end:
                await enforcer.aenforce_tool(tool)
                done += 1
            return done

        start = time.perf_counter()
        counts = await asyncio.gather(*(worker() for _ in range(concurrency)))
        return sum(counts) / (time.perf_counter() - start)
    finally:
        await engine.aclose()


def probe_rss(workload: Workload, size: int, actions: str) -> dict[str, int]:
    """Peak RSS of a fresh agent process holding an embedded enforcer of the ``size``-entry policy."""
    command = [
        sys.executable,
        "-m",
        "tests.bench.rss_probe",
        str(workload.policy_file(size)),
        str(workload.keyring.path),
        actions,
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=workload.environment(), cwd=_ROOT, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"the RSS probe failed: {result.stderr.strip()[-300:]}")
    return json.loads(result.stdout)
