"""A bounded, thread-safe cache of decisions keyed by engine revision and a hashable query key; reads take no lock.

A decision is a pure function of the policy revision and the input, so it can be
reused until the revision changes; the cache empties itself the first time it
sees a new revision. An empty revision means the engine cannot tell policy
versions apart, and nothing is cached. Engines whose policy can change without
the runtime noticing at once (an external OPA polling bundles) also bound how
long an entry may be reused (``ttl``). Rate-limit decisions depend on counters,
not only on the input, and are never cached (the enforcer's concern).

Reads take no lock (a cache hit is one tuple read and one dict lookup, atomic
under the GIL): with a lock, cache hits from 8 threads fell to a third of one
thread's rate, a convoy on the lock. Writes and revision switches take the lock;
the revision and its table are swapped together as one tuple. When full, the
oldest *inserted* entry goes (FIFO: an LRU would need a write on every hit).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["DEFAULT_MAXSIZE", "DecisionCache"]

#: Entries kept; a decision with its key is well under a kilobyte.
DEFAULT_MAXSIZE = 4096

V = TypeVar("V")


class DecisionCache(Generic[V]):
    """At most ``maxsize`` decisions of one revision; entries older than ``ttl`` seconds are not reused."""

    def __init__(
        self, maxsize: int = DEFAULT_MAXSIZE, *, ttl: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        # (revision, table): replaced whole, so a reader never pairs one revision with another's table.
        self._state: tuple[str, dict[Hashable, tuple[float, V]]] = ("", {})
        # Statistics, counted without a lock: approximate under contention.
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._state[1])

    def get(self, revision: str, key: Hashable) -> V | None:
        """The cached decision for ``key`` under ``revision``, or None."""
        current, table = self._state
        if revision != current:
            with self._lock:
                if self._state[0] != revision:
                    self._state = (revision, {})
            self.misses += 1
            return None
        entry = table.get(key)
        if entry is not None and (self.ttl is None or self._clock() - entry[0] < self.ttl):
            self.hits += 1
            return entry[1]
        self.misses += 1
        return None

    def put(self, revision: str, key: Hashable, value: V) -> None:
        """Remember ``value``, unless ``revision`` is empty or no longer current."""
        with self._lock:
            current, table = self._state
            if not revision or revision != current:
                # A decision made under an older revision than the newest one seen must not come back.
                return
            table.pop(key, None)  # re-inserted last: the newest entry
            table[key] = (self._clock(), value)
            while len(table) > self.maxsize:
                del table[next(iter(table))]

    def clear(self) -> None:
        """Drop every cached decision."""
        with self._lock:
            self._state = (self._state[0], {})
