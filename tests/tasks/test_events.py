"""handle_event: apply once, dead-letter what cannot be applied, retry only what may succeed."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import pytest
import redis
from celery.exceptions import Reject

import tasks.events
from core.errors import OneRosterHTTPError, OneRosterUnavailable
from tasks.events import handle_event
from tests.tasks.conftest import TaskWorld


def envelope(kind: str = "resource.updated", **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{uuid.uuid4().hex}",
        "source": "tests",
        "type": f"oneroster.{kind}",
        "subject": "res-1",
        "data": data,
    }


def test_valid_event_marks_the_course_and_enqueues_its_rebuild(world: TaskWorld) -> None:
    result = handle_event(envelope("courseComponent.updated", courseId="course-1"))
    assert result["outcome"] == "applied"
    assert [e["course_id"] for e in world.enqueued] == ["course-1"]
    assert world.rt.debouncer.is_dirty("course-1")


def test_the_same_event_twice_is_applied_once(world: TaskWorld) -> None:
    evt = envelope("course.updated", courseId="course-1")
    handle_event(evt)
    assert handle_event(evt)["outcome"] == "duplicate"
    assert len(world.enqueued) == 1


def test_invalid_envelope_is_dead_lettered_not_retried(world: TaskWorld) -> None:
    result = handle_event({"specversion": "2.0", "id": "x"})
    assert result["outcome"] == "invalid"
    entries = world.rt.dlq.list()
    assert len(entries) == 1 and entries[0].source == "worker"
    assert "specversion" in entries[0].reason
    assert world.enqueued == []


def test_upstream_outage_is_retried_from_the_durable_schedule(
    monkeypatch: pytest.MonkeyPatch, world: TaskWorld
) -> None:
    def down(_rid: str) -> list[str]:
        raise OneRosterUnavailable("down", resource_id="res-1")

    monkeypatch.setattr(world.rt.intake, "_upstream", down)
    evt = envelope("resource.updated")
    before = time.time()
    assert handle_event(evt)["outcome"] == "retry"
    assert world.rt.dlq.count() == 0
    due = world.rt.schedule.due_at(f"event:{evt['id']}")
    assert due is not None and due > before  # nothing waits in a worker or on the broker
    [entry] = world.rt.schedule.claim(limit=10, now=due + 1)
    assert entry.task == "course_bundles.handle_event" and entry.queue == "events"
    assert entry.args == [evt] and entry.kwargs == {"attempt": 1}


def test_permanent_upstream_error_is_dead_lettered_at_once(
    monkeypatch: pytest.MonkeyPatch, world: TaskWorld
) -> None:
    def refused(_rid: str) -> list[str]:
        raise OneRosterHTTPError("forbidden", status=403)

    monkeypatch.setattr(world.rt.intake, "_upstream", refused)
    result = handle_event(envelope("resource.updated"))
    assert result["outcome"] == "failed"
    [entry] = world.rt.dlq.list()
    assert entry.source == "task" and "not retryable" in entry.reason


def test_oversized_event_straight_from_the_broker_is_dead_lettered(world: TaskWorld) -> None:
    evt = envelope("course.updated", courseId="course-1", padding="x" * (70 * 1024))
    assert handle_event(evt)["outcome"] == "invalid"
    [entry] = world.rt.dlq.list()
    assert "too large" in entry.reason or "bytes" in entry.reason
    assert world.enqueued == []


@pytest.mark.parametrize(
    "error",
    [redis.ResponseError("WRONGTYPE Operation against a key"), KeyError("courseId")],
    ids=["wrongtype", "key-error"],
)
def test_an_unexpected_failure_is_retried_then_dead_lettered_not_lost(
    monkeypatch: pytest.MonkeyPatch, world: TaskWorld, error: Exception
) -> None:
    def broken(_event: Any) -> Any:
        raise error

    monkeypatch.setattr(world.rt.intake, "handle", broken)
    evt = envelope("course.updated", courseId="course-1")
    assert handle_event(evt)["outcome"] == "retry"
    assert world.rt.dlq.count() == 0
    budget = world.rt.settings.event_max_retries
    assert handle_event(evt, attempt=budget)["outcome"] == "failed"
    [letter] = world.rt.dlq.list()
    assert letter.source == "task" and type(error).__name__ in letter.reason
    assert orjson.loads(letter.payload_bytes())["id"] == evt["id"]  # replayable as it came


def test_an_event_past_its_budget_is_dead_lettered_not_retried_for_ever(
    monkeypatch: pytest.MonkeyPatch, world: TaskWorld
) -> None:
    def down(_rid: str) -> list[str]:
        raise OneRosterUnavailable("down", resource_id="res-1")

    monkeypatch.setattr(world.rt.intake, "_upstream", down)
    budget = world.rt.settings.event_max_retries
    assert handle_event(envelope("resource.updated"), attempt=budget + 40)["outcome"] == "failed"
    assert world.rt.dlq.count() == 1


@pytest.mark.parametrize("attempt", ["extra", -1, True, 1.5, None])
def test_an_attempt_that_is_not_a_count_is_refused(world: TaskWorld, attempt: Any) -> None:
    result = handle_event(envelope("course.updated", courseId="course-1"), attempt=attempt)
    assert result["outcome"] == "invalid"
    [letter] = world.rt.dlq.list()
    assert "attempt" in letter.reason
    assert world.enqueued == []


def test_an_event_whose_failure_cannot_be_recorded_goes_back_to_the_broker(
    monkeypatch: pytest.MonkeyPatch, world: TaskWorld
) -> None:
    def redis_gone(*_a: Any, **_k: Any) -> Any:
        raise redis.ConnectionError("redis went away")

    monkeypatch.setattr(world.rt.intake, "handle", redis_gone)
    monkeypatch.setattr(world.rt.schedule, "put", redis_gone)
    monkeypatch.setattr(world.rt.dlq, "add", redis_gone)
    monkeypatch.setattr(tasks.events, "UNRECORDED_PAUSE_S", 0.0)
    with pytest.raises(Reject) as rejected:
        handle_event(envelope("course.updated", courseId="course-1"))
    assert rejected.value.requeue


def test_a_damaged_dirty_key_is_repaired_so_the_event_applies_on_its_retry(
    world: TaskWorld,
) -> None:
    rt = world.rt
    rt.redis.set(rt.keys.dirty("course-1"), b"not a hash")
    evt = envelope("courseComponent.updated", courseId="course-1")
    assert handle_event(evt)["outcome"] == "retry"
    assert rt.redis.type(rt.keys.dirty("course-1")) in (b"hash", b"none")
    assert handle_event(evt, attempt=1)["outcome"] == "applied"
    assert rt.debouncer.is_dirty("course-1")
