"""The rebuild protocol's every outcome, with no Celery: a fake build, store and dead letters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import fakeredis
import pytest

from core.errors import CourseNotFound, OneRosterUnavailable
from core.keys import Keys
from core.pipeline.debounce import Debouncer
from core.pipeline.failures import FailurePolicy
from core.pipeline.protocol import (
    BackingOff,
    Covered,
    HandedOff,
    Parked,
    RebuildMessage,
    RebuildProtocol,
    Run,
    WaitUntil,
)
from core.pipeline.rebuild import RebuildOutcome


@dataclass
class World:
    debouncer: Debouncer
    generations: dict[str, int] = field(default_factory=dict)
    requested: list[dict[str, Any]] = field(default_factory=list)
    letters: list[dict[str, Any]] = field(default_factory=list)
    builds: list[str] = field(default_factory=list)
    fail_with: Exception | None = None
    on_build: Any = None

    def generation(self, course_id: str) -> int | None:
        return self.generations.get(course_id)

    def add(self, **letter: Any) -> str:
        self.letters.append(letter)
        return str(len(self.letters))

    def request(self, course_id: str, **kw: Any) -> None:
        self.requested.append({"course_id": course_id, **kw})

    def build(self, course_id: str) -> RebuildOutcome:
        self.builds.append(course_id)
        if self.on_build is not None:
            self.on_build()
        if self.fail_with is not None:
            raise self.fail_with
        generation = self.generations.get(course_id, 0) + 1
        self.generations[course_id] = generation
        return RebuildOutcome(course_id, generation, "stored", 1.0)

    def protocol(self, max_retries: int = 3) -> RebuildProtocol:
        return RebuildProtocol(
            self.debouncer,
            self,
            build=self.build,
            requests=self.request,
            dead_letters=self,
            policy=FailurePolicy(max_retries=max_retries),
        )


@pytest.fixture
def world(fake_redis: fakeredis.FakeRedis, keys: Keys) -> World:
    return World(Debouncer(fake_redis, keys, debounce_s=0.25, max_wait_s=5.0, lease_ms=10_000))


def test_a_dirty_course_runs_and_ends_clean(world: World) -> None:
    world.debouncer.note_dirty("c1")
    result = world.protocol().handle(RebuildMessage("c1"))
    assert result == {"outcome": "stored", "generation": 1, "clean": True}
    assert not world.debouncer.is_dirty("c1") and world.requested == []


def test_decide_names_every_outcome(world: World) -> None:
    protocol = world.protocol()
    world.generations["built"] = 3
    assert isinstance(protocol.decide(RebuildMessage("built")), Covered)
    world.debouncer.note_dirty("c1")
    run = protocol.decide(RebuildMessage("c1"))
    assert isinstance(run, Run)
    world.debouncer.note_dirty("c1")
    assert isinstance(protocol.decide(RebuildMessage("c1")), HandedOff)
    world.debouncer.note_dirty("c2")
    assert isinstance(protocol.decide(RebuildMessage("c2", trailing=True)), WaitUntil)
    world.debouncer.note_dirty("c3")
    world.debouncer.record_failure("c3", lambda _n: 30.0)
    assert isinstance(protocol.decide(RebuildMessage("c3", failures=0)), BackingOff)
    world.debouncer.record_failure("c4", lambda _n: 30.0, park=lambda _n: True)
    assert isinstance(protocol.decide(RebuildMessage("c4")), Parked)


def test_a_trailing_rebuild_that_comes_early_asks_again_later(world: World) -> None:
    world.debouncer.note_dirty("c1")
    result = world.protocol().handle(RebuildMessage("c1", trailing=True))
    assert result == {"outcome": "waiting"}
    [again] = world.requested
    assert again["trailing"] and 0 < again["countdown"] <= 0.25
    assert world.builds == []


def test_events_during_the_build_hand_over_one_trailing_rebuild(world: World) -> None:
    world.debouncer.note_dirty("c1")

    def events_arrive() -> None:
        # The first event during the build asks for the trailing rebuild; the rest join it.
        for _ in range(20):
            countdown = world.debouncer.note_dirty("c1")
            if countdown is not None:
                world.request("c1", countdown=countdown, retries=0, trailing=True)

    world.on_build = events_arrive
    result = world.protocol().handle(RebuildMessage("c1"))
    assert result["outcome"] == "stored" and not result["clean"]
    [trailing] = world.requested  # one, however many events arrived
    assert trailing["trailing"] and trailing["countdown"] > 0
    assert world.debouncer.is_dirty("c1")


def test_a_retryable_failure_backs_off_then_dead_letters_once_and_keeps_healing(
    world: World,
) -> None:
    protocol = world.protocol(max_retries=3)
    world.fail_with = OneRosterUnavailable("down")
    world.debouncer.note_dirty("c1")
    outcomes = [protocol.handle(RebuildMessage("c1", failures=n))["outcome"] for n in range(5)]
    assert outcomes == ["retry"] * 5
    assert [r["retries"] for r in world.requested] == [1, 2, 3, 4, 5]
    assert len(world.letters) == 1 and "after 3 tries" in world.letters[0]["reason"]
    world.fail_with = None
    assert protocol.handle(RebuildMessage("c1", failures=5))["outcome"] == "stored"
    assert world.debouncer.backoff("c1") is None


def test_a_permanent_failure_is_dead_lettered_and_settled(world: World) -> None:
    world.fail_with = CourseNotFound("no slug")
    world.debouncer.note_dirty("c1")
    assert world.protocol().handle(RebuildMessage("c1"))["outcome"] == "failed"
    assert not world.debouncer.is_dirty("c1") and world.requested == []
    assert "not retryable" in world.letters[0]["reason"]


def test_an_unexpected_failure_parks_the_course_after_the_budget(world: World) -> None:
    protocol = world.protocol(max_retries=2)
    world.fail_with = ZeroDivisionError("odd record")
    world.debouncer.note_dirty("c1")
    assert protocol.handle(RebuildMessage("c1"))["outcome"] == "retry"
    assert protocol.handle(RebuildMessage("c1", failures=1))["outcome"] == "parked"
    assert protocol.handle(RebuildMessage("c1", failures=2))["outcome"] == "parked"
    assert len(world.builds) == 2 and len(world.letters) == 1


def test_redis_failing_while_recording_a_failure_is_reported_not_raised(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.fail_with = OneRosterUnavailable("down")
    world.debouncer.note_dirty("c1")

    def no_redis(*_a: Any, **_k: Any) -> Any:
        raise ConnectionError("redis went away")

    monkeypatch.setattr(world.debouncer, "record_failure", no_redis)
    assert world.protocol().handle(RebuildMessage("c1"))["outcome"] == "unrecorded"
    assert world.debouncer.is_dirty("c1")  # reconcile will requeue it


def test_an_event_during_a_build_that_fails_for_good_still_gets_its_rebuild(
    world: World,
) -> None:
    world.generations["c1"] = 4  # an old bundle is served meanwhile
    world.debouncer.note_dirty("c1")
    world.fail_with = CourseNotFound("no slug")

    def the_fix_arrives() -> None:
        countdown = world.debouncer.note_dirty("c1")  # the event fixing the slug
        if countdown is not None:
            world.request("c1", countdown=countdown, retries=0, trailing=True)

    world.on_build = the_fix_arrives
    assert world.protocol().handle(RebuildMessage("c1"))["outcome"] == "failed"
    assert world.debouncer.is_dirty("c1")  # the fix's change is not forgotten
    assert len(world.requested) == 1
    world.fail_with = None
    world.on_build = None
    decision = world.protocol().decide(RebuildMessage("c1", trailing=True))
    assert not isinstance(decision, Covered)


def test_once_the_retry_is_due_any_message_runs_it(world: World) -> None:
    # The retry's own entry was replaced by a plain request (failures=0): from the due time on
    # it must still rebuild, not wait for reconcile.
    world.debouncer.note_dirty("c1")
    world.debouncer.record_failure("c1", lambda _n: 5.0, now=1_000.0)
    protocol = world.protocol()
    protocol._clock = lambda: 1_004.0
    assert isinstance(protocol.decide(RebuildMessage("c1", failures=0)), BackingOff)
    protocol._clock = lambda: 1_005.5
    assert isinstance(protocol.decide(RebuildMessage("c1", failures=0)), Run)


# --- publish safety: confirmation re-reads ------------------------------------------------------
def _guarded(world: World, held: set[str], confirms: list[tuple[str, float]]) -> RebuildProtocol:
    return RebuildProtocol(
        world.debouncer,
        world,
        build=world.build,
        requests=world.request,
        dead_letters=world,
        policy=FailurePolicy(max_retries=3),
        confirmations=lambda course_id, *, countdown: confirms.append((course_id, countdown)),
        is_held=lambda course_id: course_id in held,
    )


def test_a_confirmation_rebuilds_a_held_course_though_nothing_is_dirty(world: World) -> None:
    world.generations["c1"] = 5
    protocol = _guarded(world, {"c1"}, [])
    assert isinstance(protocol.decide(RebuildMessage("c1", confirm=True)), Run)
    assert isinstance(protocol.decide(RebuildMessage("c1")), Covered)


def test_a_confirmation_for_a_course_no_longer_held_is_covered(world: World) -> None:
    world.generations["c1"] = 5
    protocol = _guarded(world, set(), [])
    assert protocol.handle(RebuildMessage("c1", confirm=True)) == {"outcome": "clean"}
    assert world.builds == []


def test_a_held_build_asks_for_its_confirmation_and_nothing_else(world: World) -> None:
    confirms: list[tuple[str, float]] = []

    def held_build(course_id: str) -> RebuildOutcome:
        world.builds.append(course_id)
        return RebuildOutcome(course_id, 7, "held", 1.0, reason="all_units", confirm_in_s=30.0)

    world.debouncer.note_dirty("c1")
    protocol = _guarded(world, {"c1"}, confirms)
    protocol._build = held_build
    result = protocol.handle(RebuildMessage("c1"))
    assert result["outcome"] == "held" and result["clean"] is True
    assert confirms == [("c1", 30.0)]
    assert world.requested == []  # no trailing rebuild: the confirmation is the only re-read
