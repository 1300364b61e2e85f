"""Tasks run as plain functions on a fakeredis-backed runtime; what they enqueue is recorded."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import pytest

import tasks.events
import tasks.rebuild
from core.oneroster.models import CourseRecords
from core.settings import Settings
from tests.core.bundle.records import synthetic
from worker.runtime import Runtime


@dataclass
class TaskWorld:
    """The runtime the tasks see, the records OneRoster answers with, and what got enqueued."""

    rt: Runtime
    fetch: Callable[[str], CourseRecords]
    enqueued: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, key_prefix: str) -> Iterator[TaskWorld]:
    rt = Runtime(Settings(_env_file=None, key_prefix=key_prefix, flight_wait_s=2.0))
    rt.__dict__["redis"] = fakeredis.FakeRedis()
    w = TaskWorld(rt, lambda _cid: synthetic(units=1, lessons=2, per_lesson=2))
    # Late-bound on purpose: tests swap w.fetch after the runtime is built.
    monkeypatch.setattr(rt, "fetch", lambda cid: w.fetch(cid))  # noqa: PLW0108
    monkeypatch.setattr(tasks.events, "get_runtime", lambda: rt)
    monkeypatch.setattr(tasks.rebuild, "get_runtime", lambda: rt)

    def record(course_id: str, **kwargs: Any) -> None:
        w.enqueued.append({"course_id": course_id, **kwargs})

    monkeypatch.setattr(tasks.rebuild, "enqueue_rebuild", record)
    yield w
