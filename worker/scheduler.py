"""Each worker's schedule loop: claim due entries of the durable schedule, enqueue them now.

Runs as a thread of the worker's main process (started by a Celery bootstep in
``worker.celery_app``). Every worker runs one; the claim script gives each entry to one of them.
An entry is acknowledged only after its message is on the broker, so a broker that is down, or a
worker killed in between, leaves the entry to come back when its claim lease lapses.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from core.logging import get_logger
from core.pipeline.schedule import DueEntry, Schedule

log = get_logger(__name__)

Send = Callable[[DueEntry], None]

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60)
CLAIM_BUCKETS = (0, 1, 2, 5, 10, 25, 50, 100, 250, 1000)


class _Histogram:
    """Bucket counts kept in plain memory (see ``LoopStats``)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        cumulative, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else str(bound), running))
        return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=self.total)


class LoopStats(Collector):
    """The loop's metrics, served by the worker's exporter in the main process.

    Not prometheus_client metrics: in multiprocess mode those share one module lock, and a pool
    process forked while this thread held it would hang on its first metric write.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lag = _Histogram(LAG_BUCKETS)
        self._claims = _Histogram(CLAIM_BUCKETS)
        self._entries = 0

    def observe(self, *, claims: int, lags: Sequence[float]) -> None:
        with self._lock:
            self._claims.observe(claims)
            for lag in lags:
                self._lag.observe(lag)

    def set_entries(self, entries: int) -> None:
        with self._lock:
            self._entries = entries

    def collect(self) -> Iterator[GaugeMetricFamily | HistogramMetricFamily]:
        with self._lock:
            yield GaugeMetricFamily(
                "cb_schedule_entries",
                "Entries of the durable schedule waiting or being enqueued (sampled every 5 s)",
                value=self._entries,
            )
            yield self._lag.family(
                "cb_schedule_lag_seconds",
                "From a schedule entry's due time to its task message being on the broker",
            )
            yield self._claims.family(
                "cb_schedule_claims_per_loop", "Entries one pass of the schedule loop claimed"
            )


STATS = LoopStats()


class ScheduleLoop:
    """Claims and enqueues due entries every ``tick_s``; backs off while Redis or a broker fails."""

    def __init__(
        self,
        schedule: Schedule,
        send: Send,
        *,
        tick_s: float = 0.05,
        limit: int = 200,
        gauge_every_s: float = 5.0,
        stats: LoopStats = STATS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stats = stats
        self._schedule = schedule
        self._send = send
        self.tick_s = tick_s
        self._limit = limit
        self._gauge_every_s = gauge_every_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """One pass over every shard; how many entries were enqueued."""
        claimed = self._schedule.claim(limit=self._limit)
        lags: list[float] = []
        try:
            for entry in claimed:
                self._send(entry)
                self._schedule.ack(entry)
                lags.append(max(0.0, self._clock() - entry.due))
        finally:
            self._stats.observe(claims=len(claimed), lags=lags)
        return len(lags)

    def start(self) -> None:
        """Run in a daemon thread until ``stop``."""
        self._thread = threading.Thread(target=self._run, name="cb-schedule", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current pass."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        log.info("schedule_loop_started", tick_s=self.tick_s, shards=self._schedule.shards)
        failing_since: float | None = None
        next_gauge = 0.0
        while not self._stop.is_set():
            try:
                sent = self.run_once()
                now = self._clock()
                if now >= next_gauge:
                    self._stats.set_entries(self._schedule.size())
                    next_gauge = now + self._gauge_every_s
            except Exception as exc:  # noqa: BLE001 - Redis or the broker is down: try again
                if failing_since is None:
                    failing_since = self._clock()
                    log.warning("schedule_loop_failing", error=str(exc), outcome="retrying")
                self._stop.wait(1.0)
                continue
            if failing_since is not None:
                log.info(
                    "schedule_loop_recovered", failing_s=round(self._clock() - failing_since, 1)
                )
                failing_since = None
            if sent < self._limit:
                self._stop.wait(self.tick_s)
        log.info("schedule_loop_stopped")
