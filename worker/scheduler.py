"""Each worker's schedule loop: claim due entries of the durable schedule, enqueue them now.

Runs as a thread of the worker's main process (started by a Celery bootstep in
``worker.celery_app``). Every worker runs one; the claim script gives each entry to one of them.
An entry is acknowledged only after its message is on the broker, so a broker that is down, or a
worker killed in between, leaves the entry to come back when its claim lease lapses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from core.logging import get_logger
from core.pipeline.schedule import DueEntry, Schedule
from worker import metrics

log = get_logger(__name__)

Send = Callable[[DueEntry], None]


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
        clock: Callable[[], float] = time.time,
    ) -> None:
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
        metrics.SCHEDULE_CLAIMS.observe(len(claimed))
        sent = 0
        for entry in claimed:
            self._send(entry)
            self._schedule.ack(entry)
            metrics.SCHEDULE_LAG.observe(max(0.0, self._clock() - entry.due))
            sent += 1
        return sent

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
                    metrics.SCHEDULED.set(self._schedule.size())
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
