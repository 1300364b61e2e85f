"""Backpressure on intake: refuse events while the broker's events queue is at its limit.

The queue's depth is read from the broker at most once per ``check_s`` (one cheap call), and the
events this process sent since are added to that reading, so one process cannot overshoot
between readings; several processes can overshoot by what the others sent within ``check_s``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final, Protocol, runtime_checkable

from core.errors import BacklogFull
from core.logging import get_logger

CHECK_S: Final = 0.5
RETRY_AFTER_S: Final = 2

log = get_logger(__name__)


@runtime_checkable
class QueueDepth(Protocol):
    """Something that can say how many messages wait on the events queue."""

    def depth(self) -> int:
        """Messages waiting (not yet delivered to a worker); raise ``BrokerUnavailable``."""


class BacklogGuard:
    """Raises ``BacklogFull`` when sending ``n`` more events would pass ``limit``."""

    def __init__(
        self,
        source: QueueDepth,
        *,
        limit: int,
        check_s: float = CHECK_S,
        retry_after_s: int = RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self.limit = limit
        self._check_s = check_s
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._depth = 0
        self._read_at: float | None = None

    def check(self, n: int) -> None:
        """Pass if ``n`` more messages keep the queue within the limit, else ``BacklogFull``."""
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._check_s:
                self._depth = self._source.depth()
                self._read_at = now
            depth = self._depth
        if depth + n > self.limit:
            log.warning(
                "events.backlog_full",
                depth=depth,
                events=n,
                limit=self.limit,
                outcome="refused",
            )
            raise BacklogFull(
                "the events backlog is full; nothing was queued, retry later",
                retry_after_s=self._retry_after_s,
                depth=depth,
                limit=self.limit,
                events=n,
            )

    def sent(self, n: int) -> None:
        """Count ``n`` messages this process just queued into the current reading."""
        with self._lock:
            self._depth += n
