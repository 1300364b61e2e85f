"""Where the budget lives: :class:`RedisBudget` (the fleet's, one hash per upstream) and
:class:`LocalBudget` (in process). :class:`FleetBudget` uses Redis and, while Redis cannot be
reached, a local budget of ``fallback_share`` of the whole: slower, never unlimited."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, Protocol

import redis

from core.budget.bucket import (
    Admission,
    BudgetState,
    Outcome,
    Snapshot,
    admit,
    release,
    snapshot,
    withdraw,
)
from core.budget.classes import RequestClass
from core.budget.order import current_age_ms
from core.budget.policy import BudgetPolicy
from core.logging import get_logger

log = get_logger("core.budget")

RETRY_REDIS_S = 5.0  # after a Redis failure, the local share is used this long before retrying


def _lua(name: str) -> str:
    return resources.files("core.budget").joinpath("lua", f"{name}.lua").read_text("utf-8")


class Budget(Protocol):
    """What the gate needs from a budget. ``admit`` orders interactive requests by
    :func:`~core.budget.order.current_age_ms` (the gate sets it around the call)."""

    def admit(self, cls: RequestClass, lease_id: str) -> Admission: ...

    def withdraw(self, cls: RequestClass, lease_id: str) -> None: ...

    def release(self, lease_id: str, outcome: Outcome, retry_after_s: float) -> bool: ...

    def snapshot(self) -> Snapshot: ...


def _wall_ms() -> int:
    return int(time.time() * 1000)


class LocalBudget:
    """The same arithmetic in this process only (tests, and the fallback share)."""

    def __init__(
        self,
        policy: BudgetPolicy,
        *,
        clock_ms: Callable[[], int] = _wall_ms,
        source: str = "local",
    ) -> None:
        self.policy = policy
        self.state = BudgetState()
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._source = source

    def admit(self, cls: RequestClass, lease_id: str) -> Admission:
        with self._lock:
            now = self._clock_ms()
            return admit(self.state, self.policy, cls, lease_id, now, age_ms=current_age_ms())

    def withdraw(self, cls: RequestClass, lease_id: str) -> None:
        with self._lock:
            withdraw(self.state, cls, lease_id)

    def release(self, lease_id: str, outcome: Outcome, retry_after_s: float) -> bool:
        with self._lock:
            ms = round(retry_after_s * 1000)
            now = self._clock_ms()
            return release(self.state, self.policy, lease_id, outcome, retry_after_ms=ms, now=now)

    def snapshot(self) -> Snapshot:
        with self._lock:
            return snapshot(self.state, self.policy, self._clock_ms(), self._source)


def _policy_args(policy: BudgetPolicy) -> list[Any]:
    p = policy
    return [
        p.max_rps,
        p.burst,
        p.max_inflight,
        p.lease_ms,
        p.reserve_share,
        p.floor_share,
        p.decrease,
        p.increase_rps,
        p.min_rps,
        p.waiter_ms,
        p.poll_ms,
    ]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def state_from_hash(raw: dict[Any, Any]) -> BudgetState:
    """A :class:`BudgetState` from the budget hash (for :meth:`RedisBudget.snapshot`)."""
    state = BudgetState()
    for key, value in raw.items():
        name, number = _text(key), float(_text(value))
        if name.startswith("l:"):
            state.leases[name[2:]] = int(number)
        elif name.startswith("w:"):
            cls, _, wid = name[2:].partition(":")
            state.waiters[(cls, wid)] = int(number)
        elif name.startswith("q:"):
            state.queued[name[2:]] = int(number)
        elif name.startswith("f:"):
            state.floors[name[2:]] = number
        elif name == "rate":
            state.rate = number
        elif name == "tokens":
            state.tokens = number
        elif name in ("at", "cut_at", "inc_at"):
            setattr(state, name, int(number))
        elif name == "paused":
            state.paused_until = int(number)
    return state


class RedisBudget:
    """The fleet's budget for one upstream: one hash, three scripts, the Redis server's clock.

    ``clock_ms`` (tests) passes a frozen time to the scripts instead of the server's.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        policy: BudgetPolicy,
        *,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.redis = client
        self.key = key
        self.policy = policy
        self._clock_ms = clock_ms
        common = _lua("budget_common")
        self._admit = client.register_script(common + _lua("budget_admit"))
        self._release = client.register_script(common + _lua("budget_release"))
        self._withdraw = client.register_script(_lua("budget_withdraw"))

    def _now(self) -> str:
        return "" if self._clock_ms is None else str(self._clock_ms())

    def admit(self, cls: RequestClass, lease_id: str) -> Admission:
        args = [self._now(), *_policy_args(self.policy), cls, lease_id, current_age_ms()]
        ok, wait_ms, reason, rate, _inflight = self._admit(keys=[self.key], args=args)
        return Admission(bool(int(ok)), int(wait_ms), _text(reason), float(_text(rate)))

    def withdraw(self, cls: RequestClass, lease_id: str) -> None:
        self._withdraw(keys=[self.key], args=[cls, lease_id])

    def release(self, lease_id: str, outcome: Outcome, retry_after_s: float) -> bool:
        args = [
            self._now(),
            *_policy_args(self.policy),
            lease_id,
            outcome,
            round(retry_after_s * 1000),
        ]
        started, _left, _rate = self._release(keys=[self.key], args=args)
        return bool(int(started))

    def snapshot(self) -> Snapshot:
        pipe = self.redis.pipeline()
        pipe.hgetall(self.key)
        pipe.time()
        raw, server = pipe.execute()
        now = server[0] * 1000 + server[1] // 1000 if self._clock_ms is None else self._clock_ms()
        return snapshot(state_from_hash(raw), self.policy, int(now), "redis")


class FleetBudget:
    """Redis first; while it cannot be reached, ``fallback`` (a share of the budget) instead."""

    def __init__(
        self,
        shared: Budget,
        fallback: Budget,
        *,
        clock: Callable[[], float] = time.monotonic,
        retry_s: float = RETRY_REDIS_S,
    ) -> None:
        self.shared = shared
        self.fallback = fallback
        self._clock = clock
        self._retry_s = retry_s
        self._down_until = float("-inf")
        self._local_leases: set[str] = set()
        self._lock = threading.Lock()

    def _use_local(self) -> bool:
        return self._clock() < self._down_until

    def _failed(self, exc: redis.RedisError) -> None:
        with self._lock:
            first = not self._use_local()
            self._down_until = self._clock() + self._retry_s
        if first:
            log.warning("budget.redis_unreachable", reason=type(exc).__name__, outcome="local")

    def admit(self, cls: RequestClass, lease_id: str) -> Admission:
        if not self._use_local():
            try:
                return self.shared.admit(cls, lease_id)
            except redis.RedisError as exc:
                self._failed(exc)
        decision = self.fallback.admit(cls, lease_id)
        if decision.admitted:
            with self._lock:
                self._local_leases.add(lease_id)
        return decision

    def withdraw(self, cls: RequestClass, lease_id: str) -> None:
        if not self._use_local():
            try:
                self.shared.withdraw(cls, lease_id)
            except redis.RedisError as exc:
                self._failed(exc)
        self.fallback.withdraw(cls, lease_id)

    def release(self, lease_id: str, outcome: Outcome, retry_after_s: float) -> bool:
        with self._lock:
            local = lease_id in self._local_leases
            self._local_leases.discard(lease_id)
        if local:
            return self.fallback.release(lease_id, outcome, retry_after_s)
        try:
            return self.shared.release(lease_id, outcome, retry_after_s)
        except redis.RedisError as exc:
            self._failed(exc)
            return self.fallback.release(lease_id, outcome, retry_after_s)

    def snapshot(self) -> Snapshot:
        if not self._use_local():
            try:
                return self.shared.snapshot()
            except redis.RedisError as exc:
                self._failed(exc)
        return self.fallback.snapshot()
