"""rebuild_course: fenced build under the lease, deferral, trailing edge, retries, dead letters."""

from __future__ import annotations

import time

import pytest
import redis
from celery.exceptions import SoftTimeLimitExceeded

from core.errors import OneRosterUnavailable
from core.oneroster.models import CourseRecords
from core.pipeline.debounce import Wait
from core.pipeline.reconcile import reconcile
from tasks.rebuild import rebuild_course
from tests.core.bundle.records import synthetic
from tests.tasks.conftest import TaskWorld


def test_dirty_course_is_built_and_cleaned(world: TaskWorld) -> None:
    world.rt.debouncer.note_dirty("course-1")
    result = rebuild_course("course-1")
    assert result["outcome"] == "stored" and result["clean"]
    assert world.rt.store.generation("course-1") == result["generation"]
    assert not world.rt.debouncer.is_dirty("course-1")
    assert world.enqueued == []


def test_clean_course_with_a_bundle_is_not_rebuilt_again(world: TaskWorld) -> None:
    world.rt.debouncer.note_dirty("course-1")
    first = rebuild_course("course-1")
    again = rebuild_course("course-1", trailing=True)
    assert again["outcome"] == "clean"
    assert world.rt.store.generation("course-1") == first["generation"]


def test_lease_held_hands_the_trailing_edge_to_the_running_rebuild(world: TaskWorld) -> None:
    debouncer = world.rt.debouncer
    debouncer.note_dirty("course-1")
    running = debouncer.begin("course-1")
    assert running is not None and not isinstance(running, Wait)
    debouncer.note_dirty("course-1")  # an event while it runs: schedules this message
    assert rebuild_course("course-1")["outcome"] == "deferred"
    assert world.enqueued == []
    # The running rebuild sees the event and trails once itself.
    finish = debouncer.finish(running)
    assert finish.trailing_countdown_s is not None


def test_events_during_the_build_cause_one_trailing_rebuild(world: TaskWorld) -> None:
    debouncer = world.rt.debouncer
    debouncer.note_dirty("course-1")

    def fetch_while_events_arrive(_cid: str) -> CourseRecords:
        debouncer.note_dirty("course-1")
        debouncer.note_dirty("course-1")
        from tests.core.bundle.records import synthetic

        return synthetic(units=1, lessons=1, per_lesson=1)

    world.fetch = fetch_while_events_arrive
    result = rebuild_course("course-1")
    assert result["outcome"] == "stored" and not result["clean"]
    assert debouncer.is_dirty("course-1")


def test_upstream_outage_backs_off_per_course_and_dead_letters_once(world: TaskWorld) -> None:
    calls: list[str] = []

    def down(cid: str) -> CourseRecords:
        calls.append(cid)
        raise OneRosterUnavailable("down", course_id=cid)

    world.fetch = down
    debouncer = world.rt.debouncer
    debouncer.note_dirty("course-1")
    assert rebuild_course("course-1")["outcome"] == "retry"
    retry = world.enqueued[-1]
    assert retry["retries"] == 1 and retry["countdown"] > 0
    assert debouncer.lease_holder("course-1") is None and debouncer.is_dirty("course-1")
    # Events during the backoff join the pending retry: nothing new is scheduled...
    assert debouncer.note_dirty("course-1") is None
    # ...and a message from before the hold does not reach OneRoster.
    assert rebuild_course("course-1", failures=0)["outcome"] == "backing_off"
    assert len(calls) == 1
    max_retries = world.rt.settings.rebuild_max_retries
    for expected in range(2, max_retries + 2):
        assert rebuild_course("course-1", failures=expected - 1)["outcome"] == "retry"
        assert world.enqueued[-1]["retries"] == expected
    assert world.enqueued[-1]["countdown"] <= 60
    assert world.rt.dlq.count() == 1  # once, when failures reached the budget
    world.fetch = lambda _cid: synthetic(units=1, lessons=1, per_lesson=1)
    assert rebuild_course("course-1", failures=max_retries + 1)["outcome"] == "stored"
    assert debouncer.backoff("course-1") is None


def test_course_without_a_slug_is_dead_lettered_without_retrying(
    world: TaskWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.core.bundle.records import course, synthetic

    def no_slug(_cid: str) -> CourseRecords:
        records = synthetic(units=1, lessons=1, per_lesson=1)
        records.course = course(slug=None)
        return records

    world.fetch = no_slug
    world.rt.debouncer.note_dirty("course-1")
    assert rebuild_course("course-1")["outcome"] == "failed"
    assert world.enqueued == []
    assert "not retryable" in world.rt.dlq.list()[0].reason
    assert not world.rt.debouncer.is_dirty("course-1")


@pytest.mark.parametrize(
    "error",
    [KeyError("metadata"), SoftTimeLimitExceeded(), redis.ResponseError("ERR odd")],
    ids=["key-error", "soft-time-limit", "redis-error"],
)
def test_an_unexpected_failure_is_retried_then_parked_and_dead_lettered_once(
    world: TaskWorld, error: Exception
) -> None:
    calls: list[str] = []

    def broken(cid: str) -> CourseRecords:
        calls.append(cid)
        raise error

    world.fetch = broken
    debouncer = world.rt.debouncer
    debouncer.note_dirty("course-1")
    budget = world.rt.settings.rebuild_max_retries
    outcomes = [rebuild_course("course-1", failures=n)["outcome"] for n in range(budget)]
    assert outcomes == ["retry"] * (budget - 1) + ["parked"]
    assert len(calls) == budget
    [letter] = world.rt.dlq.list()
    assert "parked" in letter.reason and type(error).__name__ in letter.reason
    assert letter.attempts == budget
    # A late retry message, or reconcile, does not reach OneRoster again...
    assert rebuild_course("course-1", failures=budget)["outcome"] == "parked"
    report = reconcile(debouncer, world.rt.store, None, stuck_after_s=0, now=time.time() + 3600)
    assert report.parked == ["course-1"] and report.requeue == []
    assert len(calls) == budget and world.rt.dlq.count() == 1
    # ...until an event: it schedules a rebuild with a fresh budget, which now succeeds.
    world.fetch = lambda _cid: synthetic(units=1, lessons=1, per_lesson=1)
    assert debouncer.note_dirty("course-1") is not None
    assert rebuild_course("course-1")["outcome"] == "stored"
    assert not debouncer.is_dirty("course-1")


def test_a_damaged_control_key_is_repaired_and_the_course_rebuilt(world: TaskWorld) -> None:
    rt = world.rt
    rt.debouncer.note_dirty("course-1")
    rt.redis.set(rt.keys.dirty("course-1"), b"not a hash")
    first = rebuild_course("course-1")
    assert first["outcome"] == "retry"
    assert rt.redis.type(rt.keys.dirty("course-1")) == b"hash"  # repaired, still dirty
    assert rebuild_course("course-1", failures=first["failures"])["outcome"] == "stored"
    assert rt.store.generation("course-1") is not None
    assert rt.dlq.count() == 0
