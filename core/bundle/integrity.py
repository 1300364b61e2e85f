"""What happens when a read finds a damaged stored key: report it once and get it repaired.

The store raises ``BundleCorrupt``; the reader hands it to a ``CorruptionReporter``, which logs
it, counts it, and asks for a rebuild of the course (or re-derives a damaged cross-course index)
at most once per ``report_interval_s`` per damaged key, however many readers hit it meanwhile.
Serving a last good version instead of an error would hook in where the reader re-raises.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from core.errors import BundleCorrupt
from core.logging import get_logger

log = get_logger(__name__)

# Remembered reports (damaged keys) per process; older ones are forgotten first.
MAX_REMEMBERED = 4096


class RequestRebuild(Protocol):
    """Asks for one course to be rebuilt soon (e.g. marks it dirty, or enqueues a rebuild)."""

    def __call__(self, course_id: str) -> None: ...


@dataclass(slots=True)
class CorruptionStats:
    """Counters the metrics layer exports: damaged keys reported, rebuilds and repairs asked."""

    reports: int = 0
    rebuilds_requested: int = 0
    indexes_repaired: int = 0
    failures: int = 0


GLOBAL_CORRUPTION_STATS = CorruptionStats()


class CorruptionReporter:
    """Reports each damaged key once per interval, then asks for its repair."""

    def __init__(
        self,
        request_rebuild: RequestRebuild,
        repair_index: Callable[[str], int] | None = None,
        *,
        report_interval_s: float = 60.0,
        stats: CorruptionStats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._request_rebuild = request_rebuild
        self._repair_index = repair_index
        self._interval_s = report_interval_s
        self.stats = stats if stats is not None else GLOBAL_CORRUPTION_STATS
        self._clock = clock
        self._lock = threading.Lock()
        self._reported: OrderedDict[tuple[str, str], float] = OrderedDict()

    def report(self, exc: BundleCorrupt) -> bool:
        """Log, count and repair ``exc``'s key unless it was reported within the interval.

        Returns True when this call reported it. Never raises: the reader's answer (a 503) must
        not turn into another error because the repair could not be asked for.
        """
        course_id = exc.context.get("course_id")
        key = str(exc.context.get("key", ""))
        reason = str(exc.context.get("reason", "unknown"))
        ident = (str(course_id) if course_id is not None else key, reason)
        now = self._clock()
        with self._lock:
            until = self._reported.get(ident)
            if until is not None and until > now:
                return False
            self._reported[ident] = now + self._interval_s
            self._reported.move_to_end(ident)
            while len(self._reported) > MAX_REMEMBERED:
                self._reported.popitem(last=False)
            self.stats.reports += 1
        log.error(
            "damaged bundle data found; repair requested",
            course_id=course_id,
            generation=exc.context.get("generation"),
            key=key,
            reason=reason,
            outcome="corrupt",
            detail=exc.message,
        )
        try:
            if course_id is not None:
                self._request_rebuild(str(course_id))
                with self._lock:
                    self.stats.rebuilds_requested += 1
            elif self._repair_index is not None and key:
                self._repair_index(key)
                with self._lock:
                    self.stats.indexes_repaired += 1
        except Exception as failure:  # noqa: BLE001 - reported; the next interval asks again
            with self._lock:
                self.stats.failures += 1
            log.warning(
                "repair of damaged bundle data could not be requested",
                course_id=course_id,
                key=key,
                reason=reason,
                outcome="repair_failed",
                error=repr(failure),
            )
        return True
