"""The budget's arithmetic with frozen time: rate and burst, in-flight cap, class rules, no
starvation, the shared pause, AIMD settling under a tighter upstream, leases that expire."""

from __future__ import annotations

import math

from core.budget.bucket import BudgetState, admit, release, snapshot, withdraw
from core.budget.classes import RequestClass
from core.budget.policy import BudgetPolicy

POLICY = BudgetPolicy(max_rps=10.0, burst=5.0, max_inflight=100, lease_ms=2000)


def take(state: BudgetState, cls: RequestClass, lease: str, now: int, p: BudgetPolicy = POLICY):
    return admit(state, p, cls, lease, now)


def done(state: BudgetState, lease: str, now: int, p: BudgetPolicy = POLICY) -> None:
    release(state, p, lease, "failed", retry_after_ms=0, now=now)


def test_burst_then_rate() -> None:
    state = BudgetState()
    admitted = [take(state, "interactive", f"a{i}", 0).admitted for i in range(7)]
    assert admitted == [True] * 5 + [False] * 2
    denied = take(state, "interactive", "late", 0)
    assert denied.reason == "rate" and denied.wait_ms == 100  # one token per 100 ms at 10/s
    assert not take(state, "interactive", "late", 99).admitted
    # Oldest first: a5 and a6 have waited longer than late, so the next tokens are theirs.
    assert not take(state, "interactive", "late", 100).admitted
    assert take(state, "interactive", "a5", 100).admitted
    assert take(state, "interactive", "a6", 200).admitted
    assert take(state, "interactive", "late", 300).admitted


def test_over_a_long_run_admissions_never_exceed_rate_times_time_plus_burst() -> None:
    state, count = BudgetState(), 0
    for now in range(0, 10_000, 7):  # a caller asking every 7 ms for 10 s
        lease = f"l{now}"
        if take(state, "interactive", lease, now).admitted:
            count += 1
            done(state, lease, now)
        else:
            withdraw(state, "interactive", lease)  # a new lease each time: this one gives up
    assert count <= 10 * 10 + 5
    assert count >= 10 * 10 - 1


def test_inflight_cap_and_release() -> None:
    p = BudgetPolicy(max_rps=1000.0, burst=1000.0, max_inflight=3)
    state = BudgetState()
    assert all(take(state, "interactive", f"l{i}", 0, p).admitted for i in range(3))
    refused = take(state, "interactive", "l3", 0, p)
    assert (refused.admitted, refused.reason) == (False, "inflight")
    done(state, "l0", 1, p)
    assert take(state, "interactive", "l3", 1, p).admitted


def test_a_leaked_lease_expires() -> None:
    p = BudgetPolicy(max_rps=1000.0, burst=1000.0, max_inflight=1, lease_ms=2000)
    state = BudgetState()
    assert take(state, "interactive", "killed-mid-request", 0, p).admitted
    assert not take(state, "interactive", "next", 1999, p).admitted
    assert snapshot(state, p, 1999, "local").inflight == 1
    assert take(state, "interactive", "next", 2000, p).admitted
    assert "killed-mid-request" not in state.leases


def test_background_leaves_the_reserve_to_interactive() -> None:
    p = BudgetPolicy(max_rps=10.0, burst=10.0, max_inflight=100, reserve_share=0.3)
    state = BudgetState()
    taken = 0
    while take(state, "background", f"b{taken}", 0, p).admitted:
        taken += 1
    assert taken == 7  # 10 - 3 reserved (floor credit starts at zero)
    assert all(take(state, "interactive", f"i{i}", 0, p).admitted for i in range(3))


def test_background_steps_back_while_interactive_waits() -> None:
    p = BudgetPolicy(max_rps=10.0, burst=2.0, max_inflight=100, reserve_share=0.0, floor_share=0)
    state = BudgetState()
    take(state, "interactive", "i0", 0, p)
    take(state, "interactive", "i1", 0, p)
    assert not take(state, "interactive", "reader", 0, p).admitted  # a reader now waits
    later = take(state, "background", "warm", 150, p)  # a token is back, but a reader waits
    assert (later.admitted, later.reason) == (False, "yield")
    assert take(state, "interactive", "reader", 150, p).admitted
    # Once no interactive request waits (its waiter entry expires), background goes again.
    assert take(state, "background", "warm", 150 + p.waiter_ms + 100, p).admitted


def test_events_go_before_background() -> None:
    p = BudgetPolicy(max_rps=10.0, burst=1.0, max_inflight=100, reserve_share=0.0, floor_share=0)
    state = BudgetState()
    take(state, "event", "e0", 0, p)
    assert not take(state, "event", "rebuild", 0, p).admitted
    assert take(state, "background", "warm", 100, p).reason == "yield"
    assert take(state, "event", "rebuild", 100, p).admitted


def _share_under_saturation(p: BudgetPolicy) -> tuple[int, int]:
    """Interactive and background both ask every 5 ms for 20 s; admissions of each."""
    state = BudgetState()
    got = {"interactive": 0, "background": 0}
    for now in range(0, 20_000, 5):
        for cls in ("interactive", "background"):
            lease = f"{cls}-{now}"
            waiter = f"{cls}-waiter"
            if take(state, cls, waiter, now, p).admitted:  # type: ignore[arg-type]
                got[cls] += 1
                done(state, waiter, now, p)
            del lease
    return got["interactive"], got["background"]


def test_no_starvation_background_keeps_its_floor_share() -> None:
    p = BudgetPolicy(max_rps=50.0, burst=10.0, max_inflight=100, floor_share=0.1)
    interactive, background = _share_under_saturation(p)
    total = interactive + background
    assert total <= 50 * 20 + 10
    assert background >= 0.08 * 50 * 20  # about the floor: 10 % of the rate
    assert background <= 0.15 * 50 * 20  # and not more: interactive demand comes first
    assert interactive >= 0.8 * 50 * 20


def test_without_a_floor_background_would_starve() -> None:
    p = BudgetPolicy(max_rps=50.0, burst=10.0, max_inflight=100, floor_share=0.0)
    _, background = _share_under_saturation(p)
    assert background <= 10  # what it took of the first burst, before readers waited


def test_a_throttle_pauses_every_class_until_retry_after() -> None:
    state = BudgetState()
    assert take(state, "event", "e", 0).admitted
    release(state, POLICY, "e", "throttled", retry_after_ms=3000, now=10)
    for cls in ("interactive", "event", "background"):
        refused = take(state, cls, f"{cls}-1", 2999)  # type: ignore[arg-type]
        assert (refused.admitted, refused.reason) == (False, "paused")
        withdraw(state, cls, f"{cls}-1")  # not asking again (or it would be first in line)
    assert take(state, "interactive", "i", 10).wait_ms == POLICY.poll_ms  # capped hint
    # It resumes at the (cut) rate, 7.5/s, with no burst saved up during the pause.
    assert state.rate == 7.5
    assert not take(state, "interactive", "i", 3010).admitted
    assert take(state, "interactive", "i", 3010 + 134).admitted


def test_throttles_cut_the_rate_once_per_pause_and_successes_climb_back() -> None:
    p = BudgetPolicy(max_rps=100.0, burst=10.0, decrease=0.5, increase_rps=10.0, min_rps=1.0)
    state = BudgetState()
    for i in range(5):  # five requests in flight all answered 429 together: one cut
        release(state, p, f"l{i}", "throttled", retry_after_ms=1000, now=100)
    assert state.rate == 50.0
    release(state, p, "x", "throttled", retry_after_ms=1000, now=1200)  # a later pause
    assert state.rate == 25.0
    for now in range(2200, 7300, 100):  # 5 s of successes at 10 req/s per second climb
        release(state, p, "ok", "ok", retry_after_ms=0, now=now)
    assert 70.0 <= (state.rate or 0) <= 76.0
    for now in range(7300, 20_000, 100):
        release(state, p, "ok", "ok", retry_after_ms=0, now=now)
    assert state.rate == 100.0  # never above the configured maximum


def _run_against_upstream(limit: float, p: BudgetPolicy, seconds: int) -> tuple[list[int], int]:
    """Callers saturate the budget; an upstream token bucket of ``limit``/s (burst 0.1 s worth)
    answers 429 Retry-After 1 past it. Requests it served per second, and its 429s."""
    state = BudgetState()
    burst = limit / 10
    tokens, at = burst, 0
    per_second = [0] * seconds
    throttles = 0
    for now in range(0, seconds * 1000, 2):
        decision = take(state, "event", "caller", now, p)
        if not decision.admitted:
            continue
        tokens = min(burst, tokens + (now - at) * limit / 1000)
        at = now
        if tokens >= 1:
            tokens -= 1
            per_second[now // 1000] += 1
            release(state, p, "caller", "ok", retry_after_ms=0, now=now)
        else:
            throttles += 1
            retry = math.ceil((1 - tokens) / limit) * 1000
            release(state, p, "caller", "throttled", retry_after_ms=retry, now=now)
    return per_second, throttles


def test_aimd_settles_just_under_an_upstream_limit_below_the_configured_rate() -> None:
    p = BudgetPolicy(max_rps=100.0, burst=10.0, max_inflight=100, increase_rps=2.0)
    per_second, throttles = _run_against_upstream(60.0, p, 120)
    steady = per_second[30:]
    mean = sum(steady) / len(steady)
    assert max(steady) <= 60 * 1.1
    assert 0.7 * 60 <= mean <= 60  # just under the limit
    assert throttles <= 0.01 * sum(per_second)  # the budget keeps 429s rare
    assert throttles >= 1  # it found the limit by probing


def test_the_rate_never_drops_below_its_minimum() -> None:
    p = BudgetPolicy(max_rps=10.0, min_rps=2.0, decrease=0.1)
    state = BudgetState()
    for i in range(10):
        release(state, p, "l", "throttled", retry_after_ms=0, now=i * 2000)
    assert state.rate == 2.0


def test_snapshot_counts_waiters_by_class() -> None:
    p = BudgetPolicy(max_rps=1.0, burst=1.0)
    state = BudgetState()
    take(state, "interactive", "first", 0, p)
    take(state, "interactive", "r1", 0, p)
    take(state, "background", "w1", 0, p)
    take(state, "background", "w2", 0, p)
    snap = snapshot(state, p, 10, "local")
    assert snap.waiting == {"interactive": 1, "event": 0, "background": 2}
    assert snap.inflight == 1
    assert snapshot(state, p, 10 + p.waiter_ms, "local").waiting["background"] == 0
