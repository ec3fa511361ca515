"""Pure statistics of the harness: timing loops, percentiles, growth exponents.

Latencies are measured per call with :func:`time.perf_counter_ns` (about 50 ns
of overhead per call on this machine, under 1 % of the cheapest row), after a
warm-up that fills caches, per-thread VMs and keep-alive connections.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Summary", "growth_exponent", "percentile", "summarize", "time_calls", "time_interleaved"]


@dataclass(frozen=True)
class Summary:
    """Order statistics of one sample, in the unit it was taken in."""

    n: int
    median: float
    p99: float
    mean: float
    min: float
    max: float


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of an ascending sequence, interpolating linearly between ranks.

    The same definition as numpy's default, so p99 of 1,000 samples sits between the 990th and 991st.
    """
    if not ordered:
        raise ValueError("percentile of an empty sample")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(samples: Sequence[float]) -> Summary:
    ordered = sorted(samples)
    if not ordered:
        raise ValueError("summary of an empty sample")
    return Summary(
        n=len(ordered),
        median=percentile(ordered, 50),
        p99=percentile(ordered, 99),
        mean=math.fsum(ordered) / len(ordered),
        min=ordered[0],
        max=ordered[-1],
    )


def time_calls(call: Callable[[], object], *, warmup: int, iterations: int) -> Summary:
    """Call ``call`` ``warmup`` times untimed, then ``iterations`` times timed one by one; microseconds."""
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    for _ in range(warmup):
        call()
    clock = time.perf_counter_ns
    samples = [0] * iterations
    for index in range(iterations):
        start = clock()
        call()
        samples[index] = clock() - start
    return summarize([sample / 1000 for sample in samples])


def time_interleaved(calls: Sequence[Callable[[], object]], *, warmup: int, iterations: int) -> list[Summary]:
    """Time several calls in turn (a, b, a, b, ...), ``iterations`` timed calls each; microseconds.

    Interleaving makes drift in the machine's load hit every call alike, so their
    ratio means something even on a noisy shared machine.
    """
    if iterations < 1 or not calls:
        raise ValueError("iterations must be at least 1 and there must be calls to time")
    for _ in range(warmup):
        for call in calls:
            call()
    clock = time.perf_counter_ns
    samples = [[0] * iterations for _ in calls]
    for index in range(iterations):
        for position, call in enumerate(calls):
            start = clock()
            call()
            samples[position][index] = clock() - start
    return [summarize([sample / 1000 for sample in series]) for series in samples]


def growth_exponent(sizes: Sequence[float], values: Sequence[float]) -> float:
    """The slope ``k`` of the least-squares fit ``log(value) = k * log(size) + c``.

    ``k`` near 1 is linear growth, near 0 constant, near 2 quadratic.
    """
    if len(sizes) != len(values) or len(sizes) < 2:
        raise ValueError("growth needs at least two (size, value) pairs")
    if min(sizes) <= 0 or min(values) <= 0:
        raise ValueError("growth needs positive sizes and values")
    xs = [math.log(size) for size in sizes]
    ys = [math.log(value) for value in values]
    mean_x = math.fsum(xs) / len(xs)
    mean_y = math.fsum(ys) / len(ys)
    spread = math.fsum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        raise ValueError("growth needs at least two different sizes")
    return math.fsum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
