"""Debounce semantics: leading edge for a quiet course, one trailing rebuild for a burst."""

from __future__ import annotations

import fakeredis

from core.keys import Keys
from core.pipeline.debounce import Debouncer, RebuildTicket, Wait


def make(fake_redis: fakeredis.FakeRedis, keys: Keys, **kw: float) -> Debouncer:
    return Debouncer(fake_redis, keys, debounce_s=0.25, max_wait_s=5.0, lease_ms=10_000, **kw)


def test_quiet_course_rebuilds_at_once(fake_redis: fakeredis.FakeRedis, keys: Keys) -> None:
    d = make(fake_redis, keys)
    assert d.note_dirty("c1") == 0.0
    assert d.is_dirty("c1")


def test_burst_before_the_rebuild_starts_schedules_only_once(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    d = make(fake_redis, keys)
    scheduled = [d.note_dirty("c1") for _ in range(200)]
    assert scheduled[0] == 0.0
    assert scheduled[1:] == [None] * 199


def test_events_during_a_rebuild_cause_exactly_one_trailing_rebuild(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    d = make(fake_redis, keys)
    d.note_dirty("c1")
    ticket = d.begin("c1")
    assert ticket is not None
    # Events while the rebuild runs: the first schedules a delayed rebuild, the rest coalesce.
    during = [d.note_dirty("c1") for _ in range(50)]
    assert during[0] is not None and during[0] > 0
    assert during[1:] == [None] * 49
    finish = d.finish(ticket)
    assert not finish.clean
    # The trailing rebuild was already scheduled by the first event during the run.
    assert finish.trailing_countdown_s is None
    assert d.is_dirty("c1")


def test_rebuild_with_no_new_events_clears_the_course(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    d = make(fake_redis, keys)
    d.note_dirty("c1")
    ticket = d.begin("c1")
    assert ticket is not None
    finish = d.finish(ticket)
    assert finish.clean
    assert not d.is_dirty("c1")
    assert d.dirty_courses() == []
    assert d.lease_holder("c1") is None


def test_second_rebuild_cannot_take_a_held_lease(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    d = make(fake_redis, keys)
    d.note_dirty("c1")
    first = d.begin("c1")
    assert first is not None
    assert d.begin("c1") is None
    assert d.retry_countdown_s("c1") >= 0.25


def test_event_right_after_a_rebuild_waits_for_the_window(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    d = make(fake_redis, keys)
    d.note_dirty("c1")
    ticket = d.begin("c1")
    assert ticket is not None
    assert d.finish(ticket).clean
    countdown = d.note_dirty("c1")
    # The window opened at begin() is still open: trailing edge, not another immediate rebuild.
    assert countdown is not None and 0 < countdown <= 0.25


def test_lease_is_released_only_by_its_owner(fake_redis: fakeredis.FakeRedis, keys: Keys) -> None:
    d = make(fake_redis, keys)
    d.note_dirty("c1")
    ticket = d.begin("c1")
    assert ticket is not None
    fake_redis.set(keys.rebuild_lease("c1"), b"someone-else")
    assert not d.release(ticket)
    assert not d.extend(ticket)
    assert d.lease_holder("c1") == "someone-else"


def test_max_wait_caps_the_countdown(fake_redis: fakeredis.FakeRedis, keys: Keys) -> None:
    d = Debouncer(fake_redis, keys, debounce_s=2.0, max_wait_s=2.0, lease_ms=10_000)
    fake_redis.set(keys.rebuild_lease("c1"), b"a-running-rebuild")
    assert d.note_dirty("c1", now=1000.0) == 2.0
    # The scheduled message was lost and its flag expired: a change first seen at t=1000 s
    # may wait at most until t=1002 s, so an event at t=1001.9 s gets 0.1 s, not the window.
    fake_redis.delete(keys.course_tag("c1") + ":scheduled")
    countdown = d.note_dirty("c1", now=1001.9)
    assert countdown is not None and countdown <= 0.1 + 1e-6


def test_clear_forgets_a_deleted_course(fake_redis: fakeredis.FakeRedis, keys: Keys) -> None:
    d = make(fake_redis, keys)
    d.note_dirty("c1")
    d.clear("c1")
    assert not d.is_dirty("c1")
    assert d.dirty_courses() == []
    assert d.note_dirty("c1") == 0.0


def test_dirty_courses_lists_only_old_marks(fake_redis: fakeredis.FakeRedis, keys: Keys) -> None:
    d = make(fake_redis, keys)
    d.note_dirty("old", now=100.0)
    d.note_dirty("new", now=200.0)
    assert d.dirty_courses(older_than_s=50, now=200.0) == ["old"]


def test_trailing_rebuild_waits_while_events_keep_arriving(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    d = make(fake_redis, keys)
    d.note_dirty("c1", now=100.0)
    leading = d.begin("c1", now=100.0)
    assert isinstance(leading, RebuildTicket)
    d.note_dirty("c1", now=100.1)
    d.note_dirty("c1", now=100.2)
    d.finish(leading, now=100.2)
    # 0.1 s after the last event: not quiet for a whole window yet.
    early = d.begin("c1", trailing=True, now=100.3)
    assert isinstance(early, Wait)
    assert abs(early.seconds - 0.15) < 1e-6
    # Quiet for a window: the one trailing rebuild runs and covers every event.
    late = d.begin("c1", trailing=True, now=100.46)
    assert isinstance(late, RebuildTicket)
    assert d.finish(late, now=100.5).clean


def test_trailing_wait_is_capped_by_max_wait(fake_redis: fakeredis.FakeRedis, keys: Keys) -> None:
    d = Debouncer(fake_redis, keys, debounce_s=0.25, max_wait_s=1.0, lease_ms=10_000)
    d.note_dirty("c1", now=100.0)
    leading = d.begin("c1", now=100.0)
    assert isinstance(leading, RebuildTicket)
    d.finish(leading, now=100.05)
    # Events every 0.1 s forever: the trailing rebuild may wait, but not past 1 s after the first.
    t = 100.1
    while t < 101.05:
        d.note_dirty("c1", now=t)
        t += 0.1
    forced = d.begin("c1", trailing=True, now=101.15)
    assert isinstance(forced, RebuildTicket)


def test_leading_rebuild_never_waits(fake_redis: fakeredis.FakeRedis, keys: Keys) -> None:
    d = make(fake_redis, keys)
    d.note_dirty("c1", now=100.0)
    assert isinstance(d.begin("c1", trailing=False, now=100.0), RebuildTicket)


def test_a_parked_course_holds_no_retry_and_an_event_gives_it_a_fresh_budget(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    d = make(fake_redis, keys)
    d.note_dirty("c1")
    first = d.record_failure("c1", lambda _n: 5.0, park=lambda n: n >= 2)
    assert not first.parked
    assert d.note_dirty("c1") is None  # joins the pending retry
    parked = d.record_failure("c1", lambda _n: 5.0, park=lambda n: n >= 2)
    assert parked.parked and parked.failures == 2
    backoff = d.backoff("c1")
    assert backoff is not None and backoff.parked
    assert fake_redis.ttl(keys.rebuild_failures("c1")) > 86400  # outlives reconcile passes
    # An event is new information: it schedules a rebuild and the budget starts again.
    assert d.note_dirty("c1") == 0.0
    assert d.backoff("c1") is None


def test_repair_deletes_only_control_keys_of_the_wrong_type(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    d = make(fake_redis, keys)
    fake_redis.set(keys.dirty("c1"), b"garbage")
    fake_redis.sadd(keys.rebuild_failures("c1"), b"x")
    fake_redis.set(keys.rebuild_lease("c1"), b"token")
    repaired = d.repair("c1")
    assert sorted(repaired) == sorted([keys.dirty("c1"), keys.rebuild_failures("c1")])
    assert fake_redis.get(keys.rebuild_lease("c1")) == b"token"
    assert d.is_dirty("c1")  # marked again, so the course is rebuilt
    assert d.repair("c1") == []
