"""The worker's schedule loop: enqueue what is due, acknowledge only what reached the broker."""

from __future__ import annotations

import fakeredis
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from core.keys import Keys
from core.pipeline.schedule import DueEntry, Schedule
from worker.scheduler import LoopStats, ScheduleLoop


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_due_entries_are_sent_once_and_their_lag_is_measured(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    clock = Clock()
    schedule = Schedule(fake_redis, keys, shards=2, claim_lease_ms=5_000, clock=clock)
    schedule.put("a", "t", due=999.9, queue="q")
    schedule.put("b", "t", due=1_500.0, queue="q")
    sent: list[str] = []
    stats = LoopStats()
    loop = ScheduleLoop(schedule, lambda e: sent.append(e.entry_id), stats=stats, clock=clock)
    assert loop.run_once() == 1 and sent == ["a"]
    assert loop.run_once() == 0
    registry = CollectorRegistry()
    registry.register(stats)
    text = generate_latest(registry).decode()
    assert 'cb_schedule_lag_seconds_bucket{le="0.25"} 1.0' in text
    assert "cb_schedule_claims_per_loop_count 2.0" in text


def test_an_entry_whose_send_failed_comes_back_after_its_lease(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    clock = Clock()
    schedule = Schedule(fake_redis, keys, shards=1, claim_lease_ms=5_000, clock=clock)
    schedule.put("a", "t", due=990.0, queue="q")

    def broker_down(_entry: DueEntry) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        ScheduleLoop(schedule, broker_down, stats=LoopStats(), clock=clock).run_once()
    sent: list[str] = []
    loop = ScheduleLoop(schedule, lambda e: sent.append(e.entry_id), stats=LoopStats(), clock=clock)
    assert loop.run_once() == 0  # still claimed by the failed pass
    clock.now += 5.1
    assert loop.run_once() == 1 and sent == ["a"]
    clock.now += 60
    assert loop.run_once() == 0 and schedule.size() == 0
