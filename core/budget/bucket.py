"""The budget's arithmetic, pure (time in ms passed in); ``lua/`` does exactly the same in Redis.

A token bucket of ``burst`` refilled at the adaptive ``rate``; leases cap requests in flight and
expire; waiters (a denied request that is still trying) expire unless they ask again. Rules:

* ``interactive`` takes a token whenever there is one and a slot is free, oldest first: a
  request ``age_ms`` old queues as of ``now - age_ms`` and is admitted only while it is among
  the oldest ``k`` interactive waiters, k the whole tokens and the free slots there are (FIFO,
  so concurrent cold builds finish one after another instead of all late together).
* ``event`` and ``background`` leave ``reserve_tokens`` and ``reserve_slots`` to interactive
  work and step back while a higher class waits (background also yields to events), except that
  each earns floor credits at ``floor_share`` of the rate, spent when it would otherwise wait
  (even on the token interactive work would take next): it never starves.
* A throttle (429, or 503 with ``Retry-After``) pauses every class until ``Retry-After`` has
  passed, empties the bucket (no burst on resume) and cuts the rate by ``decrease`` (once
  per pause); successes raise it by
  ``increase_rps`` a second of success, up to ``max_rps`` (AIMD).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from core.budget.classes import CLASSES, RequestClass
from core.budget.policy import BudgetPolicy

Outcome = Literal["ok", "throttled", "failed"]
MIN_WAIT_MS = 1


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a request may go now; if not, how long to wait before asking again, and why."""

    admitted: bool
    wait_ms: int = 0
    reason: str = "ok"  # ok, floor, paused, rate, queue, inflight, yield
    rate: float = 0.0  # the admitted rate in force (requests a second)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What ``bundles budget`` prints."""

    rate: float
    max_rps: float
    tokens: float
    inflight: int
    max_inflight: int
    paused_ms: int  # how much longer the fleet is paused (0: not paused)
    waiting: dict[str, int]
    source: str = "redis"


@dataclass
class BudgetState:
    """One upstream's budget; ``rate`` None means the configured maximum."""

    rate: float | None = None
    tokens: float | None = None
    at: int = 0
    paused_until: int = 0
    cut_at: int = -(10**15)
    inc_at: int = 0
    floors: dict[str, float] = field(default_factory=dict)
    leases: dict[str, int] = field(default_factory=dict)
    waiters: dict[tuple[str, str], int] = field(default_factory=dict)
    queued: dict[str, int] = field(default_factory=dict)  # interactive waiter: since (ms)


def _rate(state: BudgetState, policy: BudgetPolicy) -> float:
    rate = policy.max_rps if state.rate is None else state.rate
    return min(policy.max_rps, max(policy.min_rps, rate))


def _refresh(state: BudgetState, policy: BudgetPolicy, now: int) -> float:
    """Drop expired leases and waiters, refill tokens and floor credits; the rate in force."""
    state.leases = {k: v for k, v in state.leases.items() if v > now}
    state.waiters = {k: v for k, v in state.waiters.items() if v > now}
    state.queued = {k: v for k, v in state.queued.items() if ("interactive", k) in state.waiters}
    rate = _rate(state, policy)
    tokens = policy.burst if state.tokens is None else state.tokens
    # Nothing accrues while the fleet is paused: it resumes at the rate, not with a burst.
    since = max(state.at, state.paused_until)
    elapsed = max(0, now - since) if state.tokens is not None else 0
    state.tokens = min(policy.burst, tokens + elapsed * rate / 1000)
    for cls in CLASSES[1:]:
        credit = state.floors.get(cls, 0.0) + elapsed * rate * policy.floor_share / 1000
        state.floors[cls] = min(policy.floor_burst, credit)
    state.at = max(state.at, now)
    return rate


def _waiting(state: BudgetState, cls: str, other_than: str) -> bool:
    return any(c == cls and wid != other_than for (c, wid) in state.waiters)


def _older(state: BudgetState, lease_id: str, since: int) -> int:
    """Interactive waiters queued before ``(since, lease_id)``: this one's place in line."""
    mine = (since, lease_id)
    return sum(1 for wid, s in state.queued.items() if wid != lease_id and (s, wid) < mine)


def admit(
    state: BudgetState,
    policy: BudgetPolicy,
    cls: RequestClass,
    lease_id: str,
    now: int,
    *,
    age_ms: int = 0,
) -> Admission:
    """Take a token and a slot for ``lease_id`` (class ``cls``, queued ``age_ms``) at ``now``,
    or say how to wait."""
    rate = _refresh(state, policy, now)
    tokens = state.tokens or 0.0
    inflight = len(state.leases)
    since = min(now - max(0, age_ms), state.queued.get(lease_id, now))
    decision: Admission
    if now < state.paused_until:
        decision = Admission(False, state.paused_until - now, "paused")
    elif cls == "interactive":
        need = _older(state, lease_id, since) + 1
        if tokens < 1:
            decision = Admission(False, math.ceil((1 - tokens) * 1000 / rate), "rate")
        elif tokens < need:  # tokens, but older readers take them first
            decision = Admission(False, math.ceil((need - tokens) * 1000 / rate), "queue")
        elif inflight + need > policy.max_inflight:
            decision = Admission(False, policy.poll_ms // 10, "inflight")
        else:
            decision = Admission(True)
    else:
        decision = _admit_lower(state, policy, cls, lease_id, rate, tokens, inflight)
    if decision.admitted:
        state.tokens = tokens - 1
        state.leases[lease_id] = now + policy.lease_ms
        state.waiters.pop((cls, lease_id), None)
        state.queued.pop(lease_id, None)
        return Admission(True, 0, decision.reason, rate)
    state.waiters[(cls, lease_id)] = now + policy.waiter_ms
    if cls == "interactive":  # a waiter keeps its place however it counts its age
        state.queued[lease_id] = min(since, state.queued.get(lease_id, since))
    wait_ms = max(MIN_WAIT_MS, min(policy.poll_ms, decision.wait_ms))
    return Admission(False, wait_ms, decision.reason, rate)


def _admit_lower(  # noqa: PLR0917 - private, called once
    state: BudgetState,
    policy: BudgetPolicy,
    cls: RequestClass,
    lease_id: str,
    rate: float,
    tokens: float,
    inflight: int,
) -> Admission:
    higher = _waiting(state, "interactive", lease_id) or (
        cls == "background" and _waiting(state, "event", lease_id)
    )
    need = min(policy.burst, 1 + policy.reserve_tokens)  # a full bucket is always enough
    if not higher and tokens >= need and inflight < policy.max_inflight - policy.reserve_slots:
        return Admission(True)
    credit = state.floors.get(cls, 0.0)
    # A floor credit may take the token interactive work would take next (the bucket goes at
    # most one token into debt): the floor share holds however busy readers are.
    if credit >= 1 and tokens >= 0 and inflight < policy.max_inflight:
        state.floors[cls] = credit - 1
        return Admission(True, 0, "floor")
    floor_rate = rate * policy.floor_share
    if higher:
        wait = (1 - credit) * 1000 / floor_rate if floor_rate > 0 else policy.poll_ms
        return Admission(False, math.ceil(wait), "yield")
    if tokens < need:
        return Admission(False, math.ceil((need - tokens) * 1000 / rate), "rate")
    return Admission(False, policy.poll_ms // 10, "inflight")


def withdraw(state: BudgetState, cls: RequestClass, lease_id: str) -> None:
    """A waiter that gave up stops counting as waiting (and stops holding its place)."""
    state.waiters.pop((cls, lease_id), None)
    state.queued.pop(lease_id, None)


def release(
    state: BudgetState,
    policy: BudgetPolicy,
    lease_id: str,
    outcome: Outcome,
    *,
    retry_after_ms: int,
    now: int,
) -> bool:
    """Give the slot back and adapt; True when this call started (or lengthened) a pause."""
    rate = _refresh(state, policy, now)
    state.leases.pop(lease_id, None)
    if outcome == "throttled":
        until = now + max(0, retry_after_ms)
        started = until > state.paused_until
        state.paused_until = max(state.paused_until, until)
        state.tokens = 0.0  # resume at the rate, not with a burst the upstream just refused
        if now >= state.cut_at + max(1000, retry_after_ms):
            state.rate = max(policy.min_rps, rate * policy.decrease)
            state.cut_at = now
        state.inc_at = state.paused_until
        return started
    if outcome == "ok" and now >= state.paused_until:
        step = min(1000, max(0, now - state.inc_at))
        state.rate = min(policy.max_rps, rate + policy.increase_rps * step / 1000)
        state.inc_at = now
    return False


def snapshot(state: BudgetState, policy: BudgetPolicy, now: int, source: str) -> Snapshot:
    """The state at ``now`` (expired leases and waiters not counted)."""
    rate = _refresh(state, policy, now)
    waiting: dict[str, int] = dict.fromkeys(CLASSES, 0)
    for cls, _ in state.waiters:
        waiting[cls] = waiting.get(cls, 0) + 1
    return Snapshot(
        rate=rate,
        max_rps=policy.max_rps,
        tokens=state.tokens or 0.0,
        inflight=len(state.leases),
        max_inflight=policy.max_inflight,
        paused_ms=max(0, state.paused_until - now),
        waiting=waiting,
        source=source,
    )
