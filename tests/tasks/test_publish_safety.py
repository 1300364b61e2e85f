"""rebuild_course with publish safety: a held build puts its re-read on the durable schedule."""

from __future__ import annotations

import time

import fakeredis
import pytest

import tasks.rebuild
from core.settings import Settings
from tasks.rebuild import confirm_entry_id, rebuild_course, requeue_lost_confirmations
from tests.core.bundle.records import synthetic
from tests.tasks.conftest import TaskWorld
from worker.runtime import Runtime

EMPTY = synthetic(units=0, lessons=0, per_lesson=0)


@pytest.fixture
def quick(world: TaskWorld, monkeypatch: pytest.MonkeyPatch, key_prefix: str) -> TaskWorld:
    """The task world with a 0.2 s confirmation delay."""
    rt = Runtime(Settings(_env_file=None, key_prefix=key_prefix, publish_confirm_delay_s=0.2))
    rt.__dict__["redis"] = fakeredis.FakeRedis()
    monkeypatch.setattr(rt, "fetch", lambda cid: world.fetch(cid))  # noqa: PLW0108 - late-bound
    monkeypatch.setattr(tasks.rebuild, "get_runtime", lambda: rt)
    world.rt = rt
    return world


def test_a_held_build_schedules_its_confirmation_and_the_re_read_publishes(
    quick: TaskWorld,
) -> None:
    rt = quick.rt
    rt.debouncer.note_dirty("course-1")
    good = rebuild_course("course-1")["generation"]
    quick.fetch = lambda _cid: EMPTY
    rt.debouncer.note_dirty("course-1")
    held = rebuild_course("course-1")
    assert held["outcome"] == "held" and held["clean"]
    due = rt.schedule.due_at(confirm_entry_id("course-1"))
    assert due is not None and 0 < due - time.time() <= 0.2
    assert rebuild_course("course-1")["outcome"] == "clean"  # an ordinary message: covered
    time.sleep(0.25)
    confirmed = rebuild_course("course-1", confirm=True)
    assert confirmed["outcome"] == "stored" and confirmed["generation"] > good
    doc = rt.store.read_doc("course-1")
    assert doc is not None and doc["units"] == []
    assert rebuild_course("course-1", confirm=True)["outcome"] == "clean"  # nothing held now


def test_a_lost_confirmation_is_requeued_by_reconcile(quick: TaskWorld) -> None:
    rt = quick.rt
    rt.debouncer.note_dirty("course-1")
    rebuild_course("course-1")
    quick.fetch = lambda _cid: EMPTY
    rt.debouncer.note_dirty("course-1")
    rebuild_course("course-1")
    rt.schedule.cancel(confirm_entry_id("course-1"))  # the entry was lost
    assert requeue_lost_confirmations(rt) == []  # not overdue yet
    assert requeue_lost_confirmations(rt, now=time.time() + 60) == ["course-1"]
    assert rt.schedule.due_at(confirm_entry_id("course-1")) is not None
    assert requeue_lost_confirmations(rt, now=time.time() + 60) == []  # scheduled again
