"""Token buckets per key: a burst, then the rate; a cost of N spends N; keys are separate."""

from __future__ import annotations

from core.ratelimit import TokenBuckets


def test_a_full_bucket_allows_the_burst_then_refuses_with_the_wait() -> None:
    buckets = TokenBuckets(rate=2.0, burst=10)
    assert buckets.take("t", 10, now=0.0).allowed
    refused = buckets.take("t", 3, now=0.0)
    assert not refused.allowed and refused.retry_after_s == 2  # 3 units at 2/s: 1.5 s, rounded up
    assert buckets.take("t", 3, now=1.5).allowed


def test_keys_have_their_own_buckets() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1)
    assert buckets.take("a", 1, now=0.0).allowed
    assert not buckets.take("a", 1, now=0.0).allowed
    assert buckets.take("b", 1, now=0.0).allowed


def test_refill_stops_at_the_burst_and_a_huge_cost_costs_a_full_bucket() -> None:
    buckets = TokenBuckets(rate=100.0, burst=5)
    assert buckets.take("t", 5, now=0.0).allowed
    assert buckets.take("t", 50, now=1000.0).allowed  # charged as 5: never refused forever
    assert not buckets.take("t", 1, now=1000.0).allowed


def test_rate_zero_turns_the_limit_off() -> None:
    buckets = TokenBuckets(rate=0.0, burst=1)
    assert not buckets.enabled
    assert all(buckets.take("t", 1000, now=0.0).allowed for _ in range(5))
