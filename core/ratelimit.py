"""Token buckets per key (an API token), in process: ``rate`` units a second up to ``burst``.

Pure of I/O: time is passed in. Each process keeps its own buckets, so N API processes allow a
token N times the rate; the limit guards against one runaway client, not for exact quotas.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

MAX_KEYS: Final = 10_000  # buckets kept; the least recently used beyond this start full again


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a take was allowed, and if not, in how many whole seconds it would be."""

    allowed: bool
    retry_after_s: int


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """One bucket per key; ``take(key, cost, now)`` spends ``cost`` units if the bucket has them.

    ``rate <= 0`` turns the limit off. A cost above ``burst`` is charged as ``burst`` (a full
    bucket), so a single request is never refused forever.
    """

    def __init__(self, rate: float, burst: float, *, max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, cost: float, now: float) -> Decision:
        """Spend ``cost`` from ``key``'s bucket at time ``now`` (seconds, monotonic)."""
        if not self.enabled:
            return Decision(True, 0)
        cost = min(cost, self.burst)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(self.burst, now)
                while len(self._buckets) > self._max_keys:
                    self._buckets.popitem(last=False)
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.at = now
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return Decision(True, 0)
            wait_s = (cost - bucket.tokens) / self.rate
        return Decision(False, max(1, math.ceil(wait_s)))
