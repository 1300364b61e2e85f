"""Event intake: dedupe by id, routing to courses, deletes, and the negative cache."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from core.bundle.store import BundleStore
from core.errors import FanoutTooLarge
from core.events.validate import validate_event
from core.keys import Keys
from core.pipeline.debounce import Debouncer
from core.pipeline.intake import EventIntake


def envelope(kind: str, subject: str, course_id: str | None = None, **extra: Any) -> Any:
    data: dict[str, Any] = dict(extra)
    if course_id:
        data["courseId"] = course_id
    return validate_event(
        {
            "specversion": "1.0",
            "id": f"e-{kind}-{subject}-{course_id}",
            "source": "tests",
            "type": f"oneroster.{kind}",
            "subject": subject,
            "data": data,
        }
    )


def make(
    fake_redis: fakeredis.FakeRedis,
    keys: Keys,
    upstream: list[str] | None = None,
    **options: Any,
) -> Any:
    store = BundleStore(fake_redis, keys)
    calls: list[str] = []

    def from_oneroster(resource_id: str) -> list[str]:
        calls.append(resource_id)
        return list(upstream or [])

    intake = EventIntake(
        fake_redis,
        keys,
        store,
        Debouncer(fake_redis, keys),
        resource_courses_upstream=from_oneroster,
        **options,
    )
    return intake, store, calls


def test_component_event_marks_its_course_dirty_and_schedules_a_rebuild(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    intake, _store, _ = make(fake_redis, keys)
    decision = intake.handle(envelope("courseComponent.updated", "u1", "c1"))
    assert decision.rebuilds == [("c1", 0.0)]
    assert fake_redis.exists(keys.dirty("c1"))


def test_moved_component_rebuilds_both_courses(fake_redis: fakeredis.FakeRedis, keys: Keys) -> None:
    intake, _store, _ = make(fake_redis, keys)
    decision = intake.handle(envelope("courseComponent.updated", "u1", "c2", previousCourseId="c1"))
    assert sorted(c for c, _ in decision.rebuilds) == ["c1", "c2"]


def test_same_event_id_twice_is_applied_once(fake_redis: fakeredis.FakeRedis, keys: Keys) -> None:
    intake, _store, _ = make(fake_redis, keys)
    event = envelope("course.updated", "c1", "c1")
    assert not intake.handle(event).duplicate
    again = intake.handle(event)
    assert again.duplicate and again.rebuilds == []


def test_resource_event_without_course_asks_oneroster_when_no_bundle_links_it(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    intake, _store, calls = make(fake_redis, keys, upstream=["c7", "c9"])
    decision = intake.handle(envelope("resource.updated", "r1"))
    assert calls == ["r1"]
    assert sorted(c for c, _ in decision.rebuilds) == ["c7", "c9"]


def test_course_created_clears_a_remembered_not_found(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    intake, _store, _ = make(fake_redis, keys)
    fake_redis.set(keys.missing("c1"), b"1", px=30_000)
    intake.handle(envelope("course.created", "c1", "c1"))
    assert not fake_redis.exists(keys.missing("c1"))


def test_course_deleted_removes_the_bundle_and_forgets_dirty_marks(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    intake, store, _ = make(fake_redis, keys)
    intake.handle(envelope("course.updated", "c1", "c1"))
    decision = intake.handle(envelope("course.deleted", "c1", "c1"))
    assert decision.deleted == ["c1"] and decision.rebuilds == []
    assert not fake_redis.exists(keys.dirty("c1"))
    assert store.read("c1") is None


@pytest.mark.parametrize("source", ["oneroster", "index"])
def test_a_resource_in_more_courses_than_the_cap_is_refused_and_marks_nothing(
    fake_redis: fakeredis.FakeRedis, keys: Keys, source: str
) -> None:
    courses = [f"c{n:02d}" for n in range(6)]
    intake, _store, _ = make(
        fake_redis, keys, upstream=courses if source == "oneroster" else [], fanout_max=5
    )
    if source == "index":
        fake_redis.sadd(keys.resource_index("r1"), *courses)
    event = envelope("resource.updated", "r1")
    with pytest.raises(FanoutTooLarge) as info:
        intake.handle(event)
    assert not info.value.retryable
    assert info.value.context["courses_found"] == 6
    assert info.value.context["limit"] == 5
    assert not any(fake_redis.exists(keys.dirty(c)) for c in courses)
    assert not fake_redis.exists(keys.event_done(event.id))  # a replay with a higher cap works
    replayed, _store, _ = make(
        fake_redis, keys, upstream=courses if source == "oneroster" else [], fanout_max=6
    )
    assert sorted(c for c, _ in replayed.handle(event).rebuilds) == courses


def test_delete_events_leave_evidence_for_the_next_validation(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    from core.bundle.holds import PublishHolds

    holds = PublishHolds(fake_redis, keys, removals_ttl_s=60)
    intake = EventIntake(
        fake_redis,
        keys,
        BundleStore(fake_redis, keys),
        Debouncer(fake_redis, keys),
        resource_courses_upstream=lambda _rid: [],
        holds=holds,
    )
    intake.handle(envelope("courseComponent.deleted", "u7", "c1"))
    intake.handle(envelope("componentResource.deleted", "cr-1", "c1"))
    intake.handle(envelope("resource.deleted", "r-9", "c1"))
    intake.handle(envelope("courseComponent.updated", "u8", "c2", previousCourseId="c1"))
    intake.handle(envelope("courseComponent.updated", "u9", "c1"))
    assert holds.removals("c1") == ["component:u7", "component:u8", "link:cr-1", "resource:r-9"]
    assert holds.removals("c2") == []
    assert 0 < fake_redis.ttl(keys.removals("c1")) <= 60
