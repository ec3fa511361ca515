"""Throughput rows: tool decisions per second on 1, 2 and 8 threads (or asyncio tasks), and how each scales.

Threads call one shared enforcer (or, for OPA REST, a connection each) for a
fixed time after a warm-up, started together by a barrier; each row is the
median of several runs. The asyncio rows run tasks on one event loop sharing
one ``OPAEngine``. ``tput/engine/*`` is ``EmbeddedEngine.evaluate`` alone, to
tell the engine's scaling from the enforcer's Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Callable

from sekuire.compiler import Policy
from sekuire.runtime import OPAEngine, PolicyEnforcer

from .core import Bench, Factory, shared
from .opa import RestClient
from .workload import ACTIONS, AGENT_ID, engine_input

__all__ = ["async_rate", "thread_rate", "throughput"]

# (row, threads) -> the target against the same row at 1 thread.
_SCALING = {
    ("engine", 2): ("at least 1.5x 1 thread", 1.5),
    ("engine", 8): ("at least 1 thread", 1.0),
    ("embedded-cold", 2): ("at least 1.5x 1 thread", 1.5),
    ("embedded-cold", 8): ("at least 1 thread", 1.0),
    ("embedded-warm", 8): ("at least 0.9x 1 thread", 0.9),
}


def throughput(bench: Bench) -> None:
    tool = ACTIONS["tool"]["name"]
    input_ = engine_input("tool")
    port, path = bench.server.port, bench.workload.decision_path
    seconds = bench.settings.throughput_seconds

    def rest() -> tuple[Callable[[], object], Callable[[], None]]:
        client = RestClient(port, path)  # a connection per thread, as a pool would give
        return functools.partial(client.decide, input_), client.close

    with OPAEngine(bench.server.url) as engine:
        enforcers = {
            "embedded-cold": bench.enforcer(cache=False),
            "embedded-warm": bench.enforcer(cache=True),
            "external": bench.enforcer(engine, cache=False),
        }
        for threads in bench.settings.threads:
            anchor = bench.rate(
                f"tput/opa-rest/{threads}t", f"OPA REST, {threads} thread(s), a connection each",
                functools.partial(thread_rate, rest, threads, seconds),
            )
            raw = shared(functools.partial(bench.main_engine.evaluate, path, input_))
            bench.rate(
                f"tput/engine/{threads}t", f"EmbeddedEngine.evaluate alone, {threads} thread(s)",
                functools.partial(thread_rate, raw, threads, seconds),
            ).compare(anchor)
            for name, enforcer in enforcers.items():
                bench.rate(
                    f"tput/{name}/{threads}t", f"{name}, {threads} thread(s)",
                    functools.partial(thread_rate, shared(functools.partial(enforcer.enforce_tool, tool)), threads,
                                      seconds),
                ).compare(anchor)
            row = bench.rate(
                f"tput/external-async/{threads}c", f"external, asyncio, {threads} concurrent task(s)",
                functools.partial(async_rate, bench.main_policy, bench.server.url, threads, seconds),
            )
            row.compare(anchor)
            sync = bench.report.get(f"tput/external/{threads}t")
            if sync is not None:
                row.aim(f"at least the sync external engine on {threads} thread(s)", row.compare(sync) >= 1.0)
    _scaling(bench)


def _scaling(bench: Bench) -> None:
    """Each multi-thread rate against the same row at 1 thread, with the issue's targets."""
    for name in ("engine", "embedded-cold", "embedded-warm", "external"):
        single = bench.report.get(f"tput/{name}/1t")
        if single is None:
            continue
        for threads in bench.settings.threads:
            row = bench.report.get(f"tput/{name}/{threads}t")
            if row is None or threads == 1:
                continue
            ratio = row.compare(single)
            aim = _SCALING.get((name, threads))
            if aim is not None:
                row.aim(aim[0], ratio >= aim[1])


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
