"""The Lua scripts on the real Redis: the same decisions as the pure arithmetic, leases that
expire, one key per upstream; and the local share when Redis cannot be reached."""

from __future__ import annotations

import random

import redis

from core.budget.classes import CLASSES
from core.budget.policy import BudgetPolicy
from core.budget.store import FleetBudget, LocalBudget, RedisBudget
from core.keys import Keys

POLICY = BudgetPolicy(max_rps=80.0, burst=6.0, max_inflight=3, lease_ms=500, reserve_share=0.25)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


def test_lua_decides_exactly_like_the_pure_arithmetic(real_redis: redis.Redis, keys: Keys) -> None:
    clock = Clock()
    shared = RedisBudget(real_redis, keys.budget("http://up"), POLICY, clock_ms=clock)
    local = LocalBudget(POLICY, clock_ms=clock)
    rng = random.Random(7)
    open_leases: list[str] = []
    decisions = []
    for step in range(600):
        clock.now += rng.choice((0, 1, 3, 10, 40, 120))
        if open_leases and rng.random() < 0.3:
            lease = open_leases.pop(rng.randrange(len(open_leases)))
            outcome = rng.choice(("ok", "ok", "ok", "failed", "throttled"))
            retry_ms = rng.choice((0, 200, 1000)) / 1000
            expected = local.release(lease, outcome, retry_ms)  # type: ignore[arg-type]
            assert shared.release(lease, outcome, retry_ms) == expected, step  # type: ignore[arg-type]
            continue
        cls = rng.choice(CLASSES)
        lease = f"l{step % 13}"
        mine, theirs = local.admit(cls, lease), shared.admit(cls, lease)
        assert (mine.admitted, mine.wait_ms, mine.reason) == (
            theirs.admitted,
            theirs.wait_ms,
            theirs.reason,
        ), step
        assert abs(mine.rate - theirs.rate) < 1e-6
        decisions.append(mine.reason)
        if mine.admitted:
            open_leases.append(lease)
    snap_local, snap_shared = local.snapshot(), shared.snapshot()
    assert (snap_local.inflight, snap_local.waiting, snap_local.paused_ms) == (
        snap_shared.inflight,
        snap_shared.waiting,
        snap_shared.paused_ms,
    )
    assert {"ok", "rate", "paused", "inflight"} <= set(decisions)  # the scenario covers them


def test_a_lease_of_a_killed_process_frees_its_slot(real_redis: redis.Redis, keys: Keys) -> None:
    clock = Clock()
    p = BudgetPolicy(max_rps=1000.0, burst=1000.0, max_inflight=2, lease_ms=30_000)
    budget = RedisBudget(real_redis, keys.budget("http://up"), p, clock_ms=clock)
    assert budget.admit("interactive", "dead-1").admitted
    assert budget.admit("interactive", "dead-2").admitted
    refused = budget.admit("interactive", "alive")
    assert (refused.admitted, refused.reason) == (False, "inflight")
    clock.now += 30_000
    assert budget.snapshot().inflight == 0
    assert budget.admit("interactive", "alive").admitted


def test_one_hash_per_upstream_with_the_server_clock(real_redis: redis.Redis, keys: Keys) -> None:
    a = RedisBudget(real_redis, keys.budget("http://a/"), BudgetPolicy(burst=1.0))
    b = RedisBudget(real_redis, keys.budget("http://b"), BudgetPolicy(burst=1.0))
    assert a.admit("interactive", "x").admitted
    assert not a.admit("interactive", "y").admitted
    assert b.admit("interactive", "y").admitted  # another upstream, another budget
    assert keys.budget("http://a/") == keys.budget("http://a")
    assert keys.budget("http://a").count("{") == 1  # one hash tag: one Redis Cluster slot
    assert real_redis.type(keys.budget("http://a")) == b"hash"
    assert real_redis.pttl(keys.budget("http://a")) > 0  # a forgotten upstream's key expires


def test_redis_down_falls_back_to_a_share_never_to_no_limit() -> None:
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    policy = BudgetPolicy(max_rps=100.0, burst=50.0, max_inflight=40)
    share = policy.share(0.1)
    clock = Clock()
    budget = FleetBudget(
        RedisBudget(down, "cb:budget:{http://up}", policy),
        LocalBudget(share, clock_ms=clock),
    )
    admitted = sum(budget.admit("interactive", f"l{i}").admitted for i in range(100))
    assert admitted == 4  # a tenth of the 40 slots (the burst of 5 allows more)
    assert budget.snapshot().source == "local"
    for i in range(4):
        budget.release(f"l{i}", "ok", 0)
    assert budget.snapshot().inflight == 0
