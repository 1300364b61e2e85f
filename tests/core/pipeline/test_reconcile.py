"""Reconcile: requeue courses left dirty without a rebuild, catch unseen upstream changes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import fakeredis
import pytest

from core.bundle.store import BundleStore
from core.errors import OneRosterUnavailable
from core.keys import Keys
from core.pipeline.debounce import Debouncer
from core.pipeline.rebuild import Rebuilder
from core.pipeline.reconcile import reconcile
from tests.core.bundle.records import synthetic


def built(fake_redis: fakeredis.FakeRedis, keys: Keys, *ids: str) -> BundleStore:
    store = BundleStore(fake_redis, keys)
    for course_id in ids:
        records = synthetic(units=1, lessons=1, per_lesson=1)
        records.course = records.course.model_copy(update={"sourcedId": course_id})
        Rebuilder(store, lambda _cid, r=records: r).rebuild(course_id)
    return store


def test_a_dirty_course_without_a_rebuild_is_requeued(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    store = built(fake_redis, keys)
    debouncer = Debouncer(fake_redis, keys)
    debouncer.note_dirty("lost", now=100.0)
    debouncer.note_dirty("running", now=100.0)
    assert debouncer.begin("running") is not None
    report = reconcile(debouncer, store, None, stuck_after_s=10)
    assert report.stuck == ["lost"]


def test_a_course_changed_upstream_without_an_event_is_requeued(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    store = built(fake_redis, keys, "a", "b")
    asked: list[tuple[str, dt.datetime]] = []

    def changed(course_id: str, since: dt.datetime) -> bool:
        asked.append((course_id, since))
        return course_id == "b"

    report = reconcile(Debouncer(fake_redis, keys), store, changed, stuck_after_s=10)
    assert report.drifted == ["b"]
    assert {c for c, _ in asked} == {"a", "b"}
    assert all(since.tzinfo is not None for _, since in asked)


def test_drift_probes_rotate_through_courses_in_batches(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    store = built(fake_redis, keys, "a", "b", "c")
    seen: list[str] = []
    debouncer = Debouncer(fake_redis, keys)
    cursor = 0
    for _ in range(3):
        report = reconcile(
            debouncer,
            store,
            lambda cid, _since: seen.append(cid) or False,
            stuck_after_s=10,
            drift_batch=2,
            cursor=cursor,
        )
        cursor = report.next_cursor
    assert seen == ["a", "b", "c", "a", "b", "c"]


def test_an_upstream_failure_is_reported_not_raised(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    store = built(fake_redis, keys, "a")

    def down(course_id: str, since: dt.datetime) -> bool:
        raise OneRosterUnavailable("down", course_id=course_id)

    report = reconcile(Debouncer(fake_redis, keys), store, down, stuck_after_s=10)
    assert report.errors == ["a"] and report.requeue == []


def test_reconcile_leaves_backing_off_and_parked_courses_alone(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    store = built(fake_redis, keys)
    debouncer = Debouncer(fake_redis, keys)
    for course_id in ("waiting", "parked", "overdue"):
        debouncer.note_dirty(course_id, now=100.0)
    debouncer.record_failure("waiting", lambda _n: 60.0, now=1000.0)
    debouncer.record_failure("parked", lambda _n: 60.0, now=1000.0, park=lambda _n: True)
    debouncer.record_failure("overdue", lambda _n: 1.0, now=1000.0)
    report = reconcile(debouncer, store, None, stuck_after_s=10, retry_grace_s=30, now=1040.0)
    assert report.stuck == ["overdue"]  # its retry message was lost: take over
    assert report.parked == ["parked"]
    # Passes later, the parked course is still not requeued; the waiting one's retry is late.
    report = reconcile(debouncer, store, None, stuck_after_s=10, retry_grace_s=30, now=5000.0)
    assert sorted(report.stuck) == ["overdue", "waiting"]
    assert report.parked == ["parked"]


def test_a_parked_course_counts_as_drifted_only_for_changes_after_its_parking(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    store = built(fake_redis, keys, "parked")
    debouncer = Debouncer(fake_redis, keys)
    parked_at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    debouncer.record_failure(
        "parked", lambda _n: 1.0, now=parked_at.timestamp(), park=lambda _n: True
    )
    seen: list[dt.datetime] = []

    def changed(_cid: str, since: dt.datetime) -> bool:
        seen.append(since)
        return since < parked_at  # upstream's last change predates the parking

    report = reconcile(debouncer, store, changed, stuck_after_s=10)
    assert report.drifted == [] and seen == [parked_at]


def test_one_course_with_a_damaged_key_does_not_stop_the_pass(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    store = built(fake_redis, keys)
    debouncer = Debouncer(fake_redis, keys)
    debouncer.note_dirty("broken", now=100.0)
    debouncer.note_dirty("lost", now=100.0)
    fake_redis.set(keys.rebuild_failures("broken"), b"not a hash")
    report = reconcile(debouncer, store, None, stuck_after_s=10)
    assert report.stuck == ["lost"] and report.errors == ["broken"]


def test_many_dirty_courses_are_checked_in_a_few_round_trips(
    fake_redis: fakeredis.FakeRedis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = built(fake_redis, keys)
    debouncer = Debouncer(fake_redis, keys)
    for i in range(1_200):
        debouncer.note_dirty(f"c{i}", now=100.0)
    calls = {"single": 0, "pipelines": 0}
    single, pipelined = fake_redis.execute_command, fake_redis.pipeline

    def counted_single(*args: Any, **kwargs: Any) -> Any:
        calls["single"] += 1
        return single(*args, **kwargs)

    def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
        calls["pipelines"] += 1
        return pipelined(*args, **kwargs)

    monkeypatch.setattr(fake_redis, "execute_command", counted_single)
    monkeypatch.setattr(fake_redis, "pipeline", counted_pipeline)
    report = reconcile(
        debouncer, store, None, stuck_after_s=10, scheduled=lambda ids: [None] * len(ids)
    )
    assert len(report.stuck) == 1_200
    assert calls["single"] + calls["pipelines"] <= 10  # was four round trips per course
