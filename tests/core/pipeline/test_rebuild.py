"""Rebuilder: fenced builds, gone courses deleted, unknown ids leave nothing behind."""

from __future__ import annotations

import fakeredis
import pytest

from core.bundle.limits import BundleLimits
from core.bundle.store import BundleStore
from core.errors import BundleIdMismatch, BundleTooLarge, CourseNotFound
from core.keys import Keys
from core.oneroster.models import CourseRecords
from core.pipeline.rebuild import Rebuilder
from tests.core.bundle.records import synthetic


def _missing(course_id: str) -> CourseRecords:
    raise CourseNotFound("gone", course_id=course_id)


def test_rebuild_stores_a_higher_generation_each_time(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    store = BundleStore(fake_redis, keys)
    rebuilder = Rebuilder(store, lambda _cid: synthetic(units=1, lessons=1, per_lesson=2))
    first = rebuilder.rebuild("course-1")
    second = rebuilder.rebuild("course-1")
    assert (first.outcome, second.outcome) == ("stored", "stored")
    assert second.generation > first.generation
    assert store.generation("course-1") == second.generation


def test_a_course_gone_upstream_is_deleted(fake_redis: fakeredis.FakeRedis, keys: Keys) -> None:
    store = BundleStore(fake_redis, keys)
    Rebuilder(store, lambda _cid: synthetic(units=1, lessons=1, per_lesson=2)).rebuild("course-1")
    gone = Rebuilder(store, _missing).rebuild("course-1")
    assert gone.outcome == "not_found"
    assert store.read("course-1") is None


def test_probing_an_unknown_id_leaves_no_keys(fake_redis: fakeredis.FakeRedis, keys: Keys) -> None:
    store = BundleStore(fake_redis, keys)
    out = Rebuilder(store, _missing).rebuild("nobody")
    assert out.outcome == "not_found"
    assert fake_redis.keys(f"{keys.prefix}*") == []


def test_a_bundle_over_the_byte_cap_is_refused_and_the_stored_one_kept(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    store = BundleStore(fake_redis, keys)
    small = Rebuilder(store, lambda _cid: synthetic(units=1, lessons=1, per_lesson=2))
    kept = small.rebuild("course-1")
    grown = Rebuilder(
        store,
        lambda _cid: synthetic(units=3, lessons=3, per_lesson=10),
        limits=BundleLimits(max_bytes=kept.raw_size + 1),
    )
    with pytest.raises(BundleTooLarge) as caught:
        grown.rebuild("course-1")
    assert caught.value.limit == kept.raw_size + 1
    assert caught.value.size > caught.value.limit
    assert store.generation("course-1") == kept.generation


def test_an_answer_for_another_course_replaces_nothing(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    store = BundleStore(fake_redis, keys)
    course_1 = synthetic(units=1, lessons=1, per_lesson=2)
    assert course_1.course.sourcedId == "course-1"
    Rebuilder(store, lambda _cid: course_1).rebuild("course-1")
    before = store.meta("course-1")
    assert before is not None
    # OneRoster answers a read of course-9 with course-1's record.
    with pytest.raises(BundleIdMismatch):
        Rebuilder(store, lambda _cid: course_1).rebuild("course-9")
    assert store.meta("course-1") == before
    assert store.course_id_for_slug(before.slug) == "course-1"
    assert store.read("course-9") is None
    assert fake_redis.ttl(keys.fence("course-9")) > 0
