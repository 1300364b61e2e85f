"""The gate the OneRoster clients pass around every request: admission first (waiting at most
``max_wait_s``, then :class:`OneRosterThrottled`), the lease given back after, a throttle
reported so that the whole fleet pauses. Counts what it does in :class:`BudgetStats`."""

from __future__ import annotations

import asyncio
import bisect
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import redis

from core.budget.bucket import Outcome
from core.budget.classes import CLASSES, RequestClass
from core.budget.order import admission_age, current_since
from core.budget.policy import BudgetPolicy
from core.budget.store import Budget, FleetBudget, LocalBudget, RedisBudget
from core.errors import OneRosterThrottled
from core.keys import Keys
from core.logging import get_logger
from core.settings import Settings

log = get_logger("core.budget")

WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class BudgetStats:
    """Per-class counters and the wait histogram of one process (read at scrape time)."""

    admitted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))
    waited: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))
    throttled: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))
    gave_up: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))
    wait_counts: list[int] = field(default_factory=lambda: [0] * (len(WAIT_BUCKETS) + 1))
    wait_sum: float = 0.0
    waiting: int = 0  # callers waiting for admission right now
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def observe_wait(self, cls: str, seconds: float) -> None:
        with self.lock:
            self.admitted[cls] += 1
            if seconds > 0:
                self.waited[cls] += 1
            self.wait_counts[bisect.bisect_left(WAIT_BUCKETS, seconds)] += 1
            self.wait_sum += seconds

    def bump(self, counter: dict[str, int], cls: str) -> None:
        with self.lock:
            counter[cls] += 1

    def add_waiting(self, delta: int) -> None:
        with self.lock:
            self.waiting += delta


GLOBAL_BUDGET_STATS = BudgetStats()


class BudgetObserver(Protocol):
    """Metrics of the gate (worker/metrics.py, worker/api/metrics.py)."""

    def admitted(self, cls: str, waited_s: float, rate: float) -> None: ...

    def throttled(self, cls: str) -> None: ...

    def gave_up(self, cls: str) -> None: ...


@dataclass
class _Wait:
    """One caller's admission loop state (shared by the sync and async loops)."""

    cls: RequestClass
    lease_id: str
    started: float
    since: float  # when the work it serves began (its place in line), the gate's clock
    paused: bool = False
    waiting: bool = False


def _since(now: float) -> float:
    """The caller's place in line: its ``queued_since`` block, else this request's start."""
    since = current_since()
    return now if since is None else min(since, now)


class Gate:
    """Admission around one request; ``enter`` before sending, ``leave`` with how it went."""

    def __init__(
        self,
        budget: Budget,
        *,
        max_wait_s: float = 5.0,
        stats: BudgetStats = GLOBAL_BUDGET_STATS,
        observer: BudgetObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.budget = budget
        self.max_wait_s = max_wait_s
        self.stats = stats
        self.observer = observer
        self._clock = clock
        self._sleep = sleep

    def _step(self, wait: _Wait) -> float | None:
        """Ask once: None when admitted, else the seconds to sleep; raises past the deadline."""
        now = self._clock()
        with admission_age(round((now - wait.since) * 1000)):
            decision = self.budget.admit(wait.cls, wait.lease_id)
        waited = self._clock() - wait.started
        if decision.admitted:
            self._done(wait, waited)
            if wait.paused:
                log.info("budget.resumed", request_class=wait.cls, waited_ms=round(waited * 1000))
            self.stats.observe_wait(wait.cls, waited)
            if self.observer is not None:
                self.observer.admitted(wait.cls, waited, decision.rate)
            return None
        wait.paused = wait.paused or decision.reason == "paused"
        remaining = self.max_wait_s - waited
        if remaining <= 0:
            self._done(wait, waited)
            self._withdraw(wait)
            self.stats.bump(self.stats.gave_up, wait.cls)
            if self.observer is not None:
                self.observer.gave_up(wait.cls)
            raise OneRosterThrottled(
                "no admission from the upstream budget in time",
                retry_after_s=max(decision.wait_ms / 1000, 0.001),
                request_class=wait.cls,
                reason=decision.reason,
                waited_ms=round(waited * 1000),
            )
        if not wait.waiting:
            wait.waiting = True
            self.stats.add_waiting(1)
        return min(decision.wait_ms / 1000, remaining)

    def _withdraw(self, wait: _Wait) -> None:
        """A caller that gives up must not hold its place until its waiter entry expires."""
        try:
            self.budget.withdraw(wait.cls, wait.lease_id)
        except redis.RedisError as exc:  # it expires anyway (waiter_ms)
            log.warning("budget.withdraw_failed", request_class=wait.cls, reason=type(exc).__name__)

    def _done(self, wait: _Wait, waited: float) -> None:
        if wait.waiting:
            wait.waiting = False
            self.stats.add_waiting(-1)

    def enter(self, cls: RequestClass) -> str:
        """Wait for admission (at most ``max_wait_s``); the lease id to :meth:`leave` with."""
        now = self._clock()
        wait = _Wait(cls, uuid.uuid4().hex, now, _since(now))
        try:
            while (delay := self._step(wait)) is not None:
                self._sleep(delay)
        finally:
            self._done(wait, 0.0)
        return wait.lease_id

    async def aenter(
        self, cls: RequestClass, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> str:
        """:meth:`enter` for an event loop (the Redis call runs in a thread)."""
        now = self._clock()
        wait = _Wait(cls, uuid.uuid4().hex, now, _since(now))
        try:
            while (delay := await asyncio.to_thread(self._step, wait)) is not None:
                await sleep(delay)
        finally:
            self._done(wait, 0.0)
        return wait.lease_id

    def leave(
        self, lease_id: str, cls: RequestClass, outcome: Outcome, retry_after_s: float | None
    ) -> None:
        """Give the lease back; a throttle pauses the fleet for ``retry_after_s`` (1 s if none)."""
        pause_s = 1.0 if retry_after_s is None else retry_after_s
        if outcome == "throttled":
            self.stats.bump(self.stats.throttled, cls)
            if self.observer is not None:
                self.observer.throttled(cls)
        started = self.budget.release(lease_id, outcome, pause_s if outcome == "throttled" else 0)
        if started:
            log.warning("budget.paused", request_class=cls, retry_after_s=pause_s)


def gate_from_settings(
    settings: Settings,
    client: redis.Redis,
    *,
    max_wait_s: float | None = None,
    observer: BudgetObserver | None = None,
) -> Gate | None:
    """The gate of one process: the fleet's budget in ``client`` (its key named by the upstream
    base URL), a local share while Redis is down; None when the budget is turned off."""
    if not settings.oneroster_budget_enabled:
        return None
    policy = BudgetPolicy.from_settings(settings)
    key = Keys(prefix=settings.key_prefix).budget(settings.oneroster_base_url)
    budget = FleetBudget(
        RedisBudget(client, key, policy),
        LocalBudget(policy.share(settings.oneroster_budget_fallback_share)),
    )
    wait = settings.oneroster_budget_max_wait_s if max_wait_s is None else max_wait_s
    return Gate(budget, max_wait_s=wait, observer=observer)


def connect_budget_redis(url: str) -> redis.Redis:
    """A Redis client for the budget: short timeouts, so a hung Redis means the local share."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=1.0, socket_timeout=2.0, socket_keepalive=True
    )
