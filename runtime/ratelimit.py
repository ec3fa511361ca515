"""Sliding-window usage counters per (workspace, agent, kind): the runtime counts, the Rego decides.

Usage is kept in one-second buckets, so memory per key is bounded (at most an
hour of buckets) whatever the traffic. A bucket leaves a window only once the
window has fully passed its *end*, so rounding can make the limiter stricter,
never looser: no 60-second span ever holds more than ``max_per_minute``.

Check-then-consume is made atomic with reservations rather than a lock held
across the policy query (which would block an event loop in async code): a
reservation counts immediately, so concurrent callers see each other's pending
amounts, and is cancelled if the decision denies. Under contention a request may
be denied because of another's pending reservation that is later cancelled;
never the other way round.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from types import TracebackType
from typing import TypedDict

__all__ = ["HOUR", "MINUTE", "RateLimiter", "Reservation", "Usage"]

MINUTE = 60
HOUR = 3600


class Usage(TypedDict):
    """Amounts counted in the last minute and the last hour (``input.action.usage``)."""

    minute: int
    hour: int


class _Bucket:
    __slots__ = ("amount", "live", "second")

    def __init__(self, second: int) -> None:
        self.second = second
        self.amount = 0
        self.live = True


class _Window:
    """The buckets of one span with their running total."""

    def __init__(self, span: int) -> None:
        self.span = span
        self.buckets: deque[_Bucket] = deque()
        self.total = 0

    def expire(self, second: int) -> None:
        # A bucket covers [s, s+1); it may leave only when all of it is older than the span.
        while self.buckets and self.buckets[0].second + 1 + self.span <= second:
            bucket = self.buckets.popleft()
            bucket.live = False
            self.total -= bucket.amount

    def add(self, second: int, amount: int) -> _Bucket:
        if not self.buckets or self.buckets[-1].second != second:
            self.buckets.append(_Bucket(second))
        bucket = self.buckets[-1]
        bucket.amount += amount
        self.total += amount
        return bucket

    def remove(self, bucket: _Bucket, amount: int) -> None:
        if bucket.live:  # an expired bucket no longer counts towards the total
            bucket.amount -= amount
            self.total -= amount


class _Counter:
    def __init__(self) -> None:
        self.windows = (_Window(MINUTE), _Window(HOUR))

    def usage(self, second: int) -> Usage:
        for window in self.windows:
            window.expire(second)
        minute, hour = self.windows
        return {"minute": minute.total, "hour": hour.total}


class Reservation:
    """An amount counted ahead of a decision; :meth:`commit` keeps it, :meth:`cancel` (or leaving the ``with``) returns it."""

    def __init__(self, lock: threading.Lock, usage: Usage, amount: int, held: list[tuple[_Window, _Bucket]]) -> None:
        #: Usage before this reservation, including other callers' pending ones: what the policy judges.
        self.usage = usage
        self.amount = amount
        self._lock = lock
        self._held = held
        self._open = True

    def commit(self) -> None:
        self._open = False

    def cancel(self) -> None:
        if not self._open:  # committed (the common exit) or cancelled: nothing to return, no lock to take
            return
        with self._lock:
            if self._open:
                for window, bucket in self._held:
                    window.remove(bucket, self.amount)
                self._open = False

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.cancel()


class RateLimiter:
    """Thread-safe sliding windows (a minute and an hour) per key; ``clock`` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._counters: dict[Hashable, _Counter] = {}

    def _now(self) -> int:
        return math.floor(self._clock())

    def _counter(self, key: Hashable) -> _Counter:
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = _Counter()
        return counter

    def usage(self, key: Hashable) -> Usage:
        """What ``key`` used in the last minute and hour (pending reservations included)."""
        with self._lock:
            return self._counter(key).usage(self._now())

    def consume(self, key: Hashable, amount: int) -> None:
        """Count ``amount`` for ``key`` now, unconditionally."""
        self.reserve(key, amount).commit()

    def reserve(self, key: Hashable, amount: int) -> Reservation:
        """Atomically read the usage of ``key`` and count ``amount`` on top of it until committed or cancelled."""
        with self._lock:
            second = self._now()
            counter = self._counter(key)
            usage = counter.usage(second)
            minute, hour = counter.windows
            held = [(minute, minute.add(second, amount)), (hour, hour.add(second, amount))]
        return Reservation(self._lock, usage, amount, held)

    def reset(self, key: Hashable | None = None) -> None:
        """Forget the usage of ``key``, or of every key."""
        with self._lock:
            if key is None:
                self._counters.clear()
            else:
                self._counters.pop(key, None)
