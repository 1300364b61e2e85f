"""rebuild_course: fenced build under the lease, deferral, trailing edge, retries, dead letters."""

from __future__ import annotations

import pytest

from core.errors import OneRosterUnavailable
from core.oneroster.models import CourseRecords
from tasks.rebuild import MAX_RETRIES, rebuild_course
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


def test_lease_held_by_another_rebuild_defers(world: TaskWorld) -> None:
    world.rt.debouncer.note_dirty("course-1")
    assert world.rt.debouncer.begin("course-1") is not None
    result = rebuild_course("course-1")
    assert result["outcome"] == "deferred"
    assert world.enqueued and world.enqueued[0]["trailing"] is True
    assert world.enqueued[0]["countdown"] > 0


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


def test_upstream_outage_retries_with_backoff_then_dead_letters(world: TaskWorld) -> None:
    def down(_cid: str) -> CourseRecords:
        raise OneRosterUnavailable("down", course_id="course-1")

    world.fetch = down
    world.rt.debouncer.note_dirty("course-1")
    assert rebuild_course("course-1")["outcome"] == "retry"
    assert world.enqueued[-1]["retries"] == 1 and world.enqueued[-1]["countdown"] > 0
    assert world.rt.debouncer.lease_holder("course-1") is None
    assert world.rt.debouncer.is_dirty("course-1")
    assert rebuild_course("course-1", failures=MAX_RETRIES)["outcome"] == "failed"
    [entry] = world.rt.dlq.list()
    assert entry.context["course_id"] == "course-1"


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
