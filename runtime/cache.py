"""A bounded, thread-safe LRU of decisions keyed by engine revision and a hashable query key.

A decision is a pure function of the policy revision and the input, so it can be
reused until the revision changes; the cache empties itself the first time it
sees a new revision. An empty revision means the engine cannot tell policy
versions apart, and nothing is cached. Engines whose policy can change without
the runtime noticing at once (an external OPA polling bundles) also bound how
long an entry may be reused (``ttl``). Rate-limit decisions depend on counters,
not only on the input, and are never cached (the enforcer's concern).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["DEFAULT_MAXSIZE", "DecisionCache"]

#: Entries kept; a decision with its key is well under a kilobyte.
DEFAULT_MAXSIZE = 4096

V = TypeVar("V")


class DecisionCache(Generic[V]):
    """LRU of at most ``maxsize`` decisions of one revision; entries older than ``ttl`` seconds are not reused."""

    def __init__(
        self, maxsize: int = DEFAULT_MAXSIZE, *, ttl: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._revision = ""
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _switch(self, revision: str) -> None:
        if revision != self._revision:
            self._entries.clear()
            self._revision = revision

    def get(self, revision: str, key: Hashable) -> V | None:
        """The cached decision for ``key`` under ``revision``, or None."""
        with self._lock:
            self._switch(revision)
            entry = self._entries.get(key)
            if entry is not None and (self.ttl is None or self._clock() - entry[0] < self.ttl):
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[1]
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None

    def put(self, revision: str, key: Hashable, value: V) -> None:
        """Remember ``value``, unless ``revision`` is empty or no longer current."""
        with self._lock:
            if not revision or revision != self._revision:
                # A decision made under an older revision than the newest one seen must not come back.
                return
            self._entries[key] = (self._clock(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Drop every cached decision."""
        with self._lock:
            self._entries.clear()
