"""The durable schedule: due entries are claimed once; a lapsed claim comes back; none lost."""

from __future__ import annotations

import fakeredis
import pytest

from core.keys import Keys
from core.pipeline.debounce import Debouncer
from core.pipeline.schedule import Schedule, ScheduledRebuilds, rebuild_entry_id


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(fake_redis: fakeredis.FakeRedis, keys: Keys, clock: Clock, **kw: int) -> Schedule:
    return Schedule(fake_redis, keys, shards=4, claim_lease_ms=10_000, clock=clock, **kw)


def put(schedule: Schedule, entry_id: str, due: float, **kwargs: object) -> None:
    schedule.put(entry_id, "task.x", due=due, args=[entry_id], kwargs=dict(kwargs), queue="q")


def test_only_due_entries_are_claimed(
    fake_redis: fakeredis.FakeRedis, keys: Keys, clock: Clock
) -> None:
    schedule = make(fake_redis, keys, clock)
    put(schedule, "a", 999.0)
    put(schedule, "b", 1_000.0)
    put(schedule, "c", 1_005.0)
    claimed = schedule.claim()
    assert sorted(e.entry_id for e in claimed) == ["a", "b"]
    entry = next(e for e in claimed if e.entry_id == "a")
    assert (entry.task, entry.args, entry.queue, entry.due) == ("task.x", ["a"], "q", 999.0)
    clock.now = 1_005.0
    assert [e.entry_id for e in schedule.claim()] == ["c"]


def test_two_claimers_never_get_the_same_entry(
    fake_redis: fakeredis.FakeRedis, keys: Keys, clock: Clock
) -> None:
    one, two = make(fake_redis, keys, clock), make(fake_redis, keys, clock)
    for i in range(50):
        put(one, f"e{i}", 990.0)
    first = one.claim(limit=7)
    second = two.claim(limit=1000)
    ids_one = {e.entry_id for e in first}
    ids_two = {e.entry_id for e in second}
    assert not ids_one & ids_two
    assert ids_one | ids_two == {f"e{i}" for i in range(50)}


def test_a_claim_not_acknowledged_comes_back_after_its_lease(
    fake_redis: fakeredis.FakeRedis, keys: Keys, clock: Clock
) -> None:
    schedule = make(fake_redis, keys, clock)
    put(schedule, "a", 990.0)
    [lost] = schedule.claim()  # the claimer dies before it enqueues
    assert schedule.claim() == []
    clock.now += 9.9
    assert schedule.claim() == []
    clock.now += 0.2
    [again] = schedule.claim()
    assert again.entry_id == lost.entry_id
    schedule.ack(again)
    clock.now += 60
    assert schedule.claim() == [] and schedule.size() == 0


def test_an_acknowledged_entry_is_gone_but_a_newer_put_survives_the_ack(
    fake_redis: fakeredis.FakeRedis, keys: Keys, clock: Clock
) -> None:
    schedule = make(fake_redis, keys, clock)
    put(schedule, "a", 990.0, failures=1)
    [claimed] = schedule.claim()
    put(schedule, "a", 1_002.0, failures=2)  # re-put while being enqueued
    schedule.ack(claimed)
    assert schedule.due_at("a") == 1_002.0
    clock.now = 1_002.0
    [newer] = schedule.claim()
    assert newer.kwargs == {"failures": 2}


def test_a_later_put_moves_the_one_pending_entry(
    fake_redis: fakeredis.FakeRedis, keys: Keys, clock: Clock
) -> None:
    schedule = make(fake_redis, keys, clock)
    put(schedule, "rebuild:c1", 1_003.0)
    put(schedule, "rebuild:c1", 1_001.0, trailing=True)
    assert schedule.size() == 1
    clock.now = 1_001.0
    [entry] = schedule.claim()
    assert entry.kwargs == {"trailing": True}


def test_a_clock_in_the_past_claims_nothing_early(
    fake_redis: fakeredis.FakeRedis, keys: Keys, clock: Clock
) -> None:
    schedule = make(fake_redis, keys, clock)
    put(schedule, "a", 1_000.5)
    assert schedule.claim(now=900.0) == []  # a claimer whose clock lags waits, loses nothing
    assert schedule.due_at("a") == 1_000.5
    assert [e.entry_id for e in schedule.claim(now=1_000.5)] == ["a"]


def test_entries_spread_over_shards_with_one_hash_tag_each(
    fake_redis: fakeredis.FakeRedis, keys: Keys, clock: Clock
) -> None:
    schedule = make(fake_redis, keys, clock)
    for i in range(40):
        put(schedule, f"rebuild:course-{i}", 990.0)
    used = {schedule.shard_of(f"rebuild:course-{i}") for i in range(40)}
    assert used == {0, 1, 2, 3}
    for shard in range(4):
        tags = {k.split("{")[1].split("}")[0] for k in schedule._shard_keys(shard)}
        assert tags == {f"sched:{shard}"}


def test_an_undecodable_entry_is_dropped_not_claimed_forever(
    fake_redis: fakeredis.FakeRedis, keys: Keys, clock: Clock
) -> None:
    schedule = make(fake_redis, keys, clock)
    put(schedule, "bad", 990.0)
    shard = schedule.shard_of("bad")
    fake_redis.hset(keys.schedule_payload(shard), "bad", b"{not json")
    assert schedule.claim() == []
    clock.now += 60
    assert schedule.claim() == [] and schedule.size() == 0


def test_cancel_drops_a_pending_entry(
    fake_redis: fakeredis.FakeRedis, keys: Keys, clock: Clock
) -> None:
    schedule = make(fake_redis, keys, clock)
    put(schedule, "a", 990.0)
    schedule.cancel("a")
    assert schedule.due_at("a") is None and schedule.claim() == []


def test_a_rebuild_asked_for_without_a_broker_is_scheduled_once(
    fake_redis: fakeredis.FakeRedis, keys: Keys, clock: Clock
) -> None:
    schedule = make(fake_redis, keys, clock)
    debouncer = Debouncer(fake_redis, keys)
    soon = ScheduledRebuilds(debouncer, schedule, clock=clock)
    soon("c1")
    soon("c1")  # already pending: joins it
    assert debouncer.is_dirty("c1") and schedule.size() == 1
    [entry] = schedule.claim()
    assert (entry.task, entry.args, entry.queue) == ("course_bundles.rebuild", ["c1"], "rebuilds")
    assert entry.entry_id == rebuild_entry_id("c1")
    # A parked course is left parked: its dead letter asks a person, not every damaged read.
    debouncer.record_failure("c2", lambda _n: 1.0, park=lambda _n: True)
    soon("c2")
    assert schedule.due_at(rebuild_entry_id("c2")) is None
    backoff = debouncer.backoff("c2")
    assert backoff is not None and backoff.parked


def test_an_ack_removes_only_its_own_claim(
    fake_redis: fakeredis.FakeRedis, keys: Keys, clock: Clock
) -> None:
    one, two = make(fake_redis, keys, clock), make(fake_redis, keys, clock)
    put(one, "a", 990.0)
    [first] = one.claim()
    put(one, "a", 990.0)  # the task re-puts the same work, due now
    clock.now += 0.5
    [_second] = two.claim()  # another worker claims the re-put entry
    one.ack(first)  # the first claimer's late acknowledgement must not drop the second claim
    clock.now += 10.5  # the second claimer died before it published
    [again] = one.claim()
    assert again.entry_id == "a"


def test_entries_claimed_before_a_shard_count_change_are_acknowledged_where_they_were(
    fake_redis: fakeredis.FakeRedis, keys: Keys, clock: Clock
) -> None:
    old = make(fake_redis, keys, clock)
    for i in range(20):
        put(old, f"e{i}", 990.0)
    new = Schedule(fake_redis, keys, shards=16, claim_lease_ms=10_000, clock=clock)
    claimed = new.claim(shards=range(4))  # the old shards, drained by the new configuration
    assert len(claimed) == 20
    for entry in claimed:
        new.ack(entry)
    clock.now += 60
    assert new.claim(shards=range(16)) == [] and old.size() == 0
