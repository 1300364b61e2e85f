"""Readers first, oldest first: interactive requests are admitted in the order the work they
serve began, a build's later requests keep its place, and a waiter that dies or gives up stops
holding its place; the Lua scripts decide the same."""

from __future__ import annotations

import random

import pytest
import redis

from core.budget.bucket import BudgetState, admit, withdraw
from core.budget.classes import CLASSES
from core.budget.gate import BudgetStats, Gate
from core.budget.order import admission_age, queued_since
from core.budget.policy import BudgetPolicy
from core.budget.store import LocalBudget, RedisBudget
from core.errors import OneRosterThrottled
from core.keys import Keys
from tests.core.oneroster.fakes import FakeClock

POLICY = BudgetPolicy(max_rps=10.0, burst=2.0, max_inflight=100, lease_ms=2000)


def drain(state: BudgetState) -> None:
    """Spend the burst so that the next token comes at the rate (one per 100 ms)."""
    assert admit(state, POLICY, "interactive", "x1", 0).admitted
    assert admit(state, POLICY, "interactive", "x2", 0).admitted


def test_the_oldest_waiter_gets_the_next_token_whoever_asks_first() -> None:
    state = BudgetState()
    drain(state)
    assert not admit(state, POLICY, "interactive", "old", 10).admitted
    assert not admit(state, POLICY, "interactive", "young", 20).admitted
    # A token is there at 100; the younger one asks first, but it is the older one's.
    refused = admit(state, POLICY, "interactive", "young", 100, age_ms=80)
    assert (refused.admitted, refused.reason) == (False, "queue")
    assert admit(state, POLICY, "interactive", "old", 101, age_ms=91).admitted
    assert admit(state, POLICY, "interactive", "young", 200, age_ms=180).admitted


def test_a_builds_next_request_keeps_the_place_of_its_first() -> None:
    state = BudgetState()
    drain(state)
    # Build A started at 0; build B's first request at 50; A's second request arrives at 90,
    # 90 ms into its build: it queues as of 0, ahead of B.
    assert not admit(state, POLICY, "interactive", "b-1", 50).admitted
    assert not admit(state, POLICY, "interactive", "a-2", 90, age_ms=90).admitted
    assert not admit(state, POLICY, "interactive", "b-1", 100, age_ms=50).admitted
    assert admit(state, POLICY, "interactive", "a-2", 100, age_ms=100).admitted


def test_k_tokens_admit_the_k_oldest() -> None:
    state = BudgetState()
    drain(state)
    for i, at in enumerate((10, 20, 30)):
        assert not admit(state, POLICY, "interactive", f"w{i}", at).admitted
    # At 300 there are two tokens: the two oldest go, the third waits for the next.
    assert not admit(state, POLICY, "interactive", "w2", 300, age_ms=270).admitted
    assert admit(state, POLICY, "interactive", "w1", 300, age_ms=280).admitted
    assert admit(state, POLICY, "interactive", "w0", 300, age_ms=290).admitted
    assert not admit(state, POLICY, "interactive", "w2", 301, age_ms=271).admitted


def test_a_dead_waiter_stops_holding_its_place_after_waiter_ms() -> None:
    state = BudgetState()
    drain(state)
    assert not admit(state, POLICY, "interactive", "dead", 10).admitted  # never asks again
    refused = admit(state, POLICY, "interactive", "alive", 150)  # 1.5 tokens: dead's first
    assert (refused.admitted, refused.reason) == (False, "queue")
    assert admit(state, POLICY, "interactive", "alive", 1010, age_ms=510).admitted


def test_a_waiter_that_gives_up_stops_holding_its_place_at_once() -> None:
    state = BudgetState()
    drain(state)
    assert not admit(state, POLICY, "interactive", "gone", 10).admitted
    withdraw(state, "interactive", "gone")
    assert admit(state, POLICY, "interactive", "next", 100).admitted
    assert state.queued == {} and ("interactive", "gone") not in state.waiters


def test_the_gate_gives_up_its_place_when_it_gives_up() -> None:
    clock = FakeClock(start=0.0)
    budget = LocalBudget(POLICY, clock_ms=lambda: round(clock.now * 1000))
    gate = Gate(budget, max_wait_s=0.05, stats=BudgetStats(), clock=clock, sleep=clock.sleep)
    assert gate.enter("interactive") and gate.enter("interactive")  # the burst
    with pytest.raises(OneRosterThrottled):
        gate.enter("interactive")
    assert budget.snapshot().waiting["interactive"] == 0
    assert budget.state.queued == {}


def test_the_gate_queues_a_request_as_of_its_queued_since_block() -> None:
    clock = FakeClock()
    budget = LocalBudget(POLICY, clock_ms=lambda: round(clock.now * 1000))
    gate = Gate(budget, max_wait_s=5.0, stats=BudgetStats(), clock=clock, sleep=clock.sleep)
    gate.enter("interactive")
    gate.enter("interactive")
    # Someone started waiting 20 ms ago (and will ask again); our build began 50 ms ago.
    budget.state.waiters[("interactive", "other")] = round(clock.now * 1000) + 1000
    budget.state.queued["other"] = round(clock.now * 1000) - 20
    with queued_since(clock.now - 0.05):
        gate.enter("interactive")
    assert "other" in budget.state.queued  # still waiting: we went first
    assert clock.sleeps == [0.1]  # the first token's wait, not the second's


def test_lua_orders_exactly_like_the_pure_arithmetic(real_redis: redis.Redis, keys: Keys) -> None:
    now = [1_700_000_000_000]
    # 37/s: no sums landing exactly on a whole token (the hash keeps 14 digits, Python 17)
    policy = BudgetPolicy(max_rps=37.0, burst=3.0, max_inflight=4, lease_ms=400, waiter_ms=200)
    shared = RedisBudget(real_redis, keys.budget("http://up"), policy, clock_ms=lambda: now[0])
    local = LocalBudget(policy, clock_ms=lambda: now[0])
    rng = random.Random(11)
    started: dict[str, int] = {}
    reasons = []
    for step in range(800):
        now[0] += rng.choice((0, 1, 5, 10, 30, 90))
        lease = f"w{rng.randrange(12)}"
        if rng.random() < 0.05:
            local.withdraw("interactive", lease)
            shared.withdraw("interactive", lease)
            continue
        cls = rng.choice((*CLASSES, "interactive", "interactive"))
        since = started.setdefault(lease, now[0] - rng.randrange(300))
        with admission_age(now[0] - since):
            mine, theirs = local.admit(cls, lease), shared.admit(cls, lease)
        assert (mine.admitted, mine.reason) == (theirs.admitted, theirs.reason), step
        assert abs(mine.wait_ms - theirs.wait_ms) <= 1, step  # float rounding in the hint
        reasons.append(mine.reason)
        if mine.admitted:
            started.pop(lease)
            local.release(lease, "ok", 0)
            shared.release(lease, "ok", 0)
    assert local.snapshot().waiting == shared.snapshot().waiting
    assert {"ok", "queue", "rate"} <= set(reasons)
