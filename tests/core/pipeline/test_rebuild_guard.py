"""The guarded Rebuilder: blips are held and the last good bundle kept; real changes published."""

from __future__ import annotations

from dataclasses import dataclass, field

import fakeredis
import pytest

from core.bundle.holds import PublishHolds
from core.bundle.store import BundleStore
from core.bundle.validation import content_digest
from core.errors import CourseNotFound
from core.keys import Keys
from core.oneroster.models import CourseRecords
from core.pipeline.confirmation import ConfirmPolicy
from core.pipeline.rebuild import PublishGuard, Rebuilder
from tests.core.bundle.records import synthetic

COURSE = "course-1"


@dataclass
class Upstream:
    """What OneRoster answers now, and the clock."""

    records: CourseRecords | None = field(default_factory=lambda: synthetic(3, 3, 3))
    status_gone: str | None = None
    now: float = 1000.0

    def fetch(self, course_id: str) -> CourseRecords:
        if self.records is None:
            if self.status_gone:
                raise CourseNotFound("deleted", course_id=course_id, status=self.status_gone)
            raise CourseNotFound("course not found upstream", course_id=course_id)
        return self.records

    def empty_lists(self) -> None:
        """A blip: 200 with empty components and links."""
        assert self.records is not None
        self.good = self.records
        self.records = CourseRecords(
            course=self.records.course, components=[], component_resources=[], resources=[]
        )


@dataclass
class World:
    store: BundleStore
    holds: PublishHolds
    up: Upstream
    rebuilder: Rebuilder

    def live_digest(self) -> str | None:
        return self.store.digest(COURSE)


@pytest.fixture
def world(fake_redis: fakeredis.FakeRedis, keys: Keys) -> World:
    store = BundleStore(fake_redis, keys, keep_generations=3)
    holds = PublishHolds(fake_redis, keys, removals_ttl_s=3600)
    up = Upstream()
    guard = PublishGuard(holds, policy=ConfirmPolicy(delay_s=30, max_delay_s=120, max_attempts=3))
    return World(store, holds, up, Rebuilder(store, up.fetch, guard=guard, now=lambda: up.now))


def test_a_first_build_is_published_as_before(world: World) -> None:
    out = world.rebuilder.rebuild(COURSE)
    assert out.outcome == "stored" and world.holds.held(COURSE) is None


def test_empty_lists_are_held_and_the_last_good_bundle_stays(world: World) -> None:
    good = world.rebuilder.rebuild(COURSE)
    world.up.empty_lists()
    out = world.rebuilder.rebuild(COURSE)
    assert (out.outcome, out.reason, out.confirm_in_s) == ("held", "all_units", 30.0)
    assert world.store.generation(COURSE) == good.generation
    doc = world.store.read_doc(COURSE)
    assert doc is not None and doc["totals"]["units"] == 3
    held = world.holds.held(COURSE)
    assert held is not None and held.reason == "all_units" and held.attempts == 1
    assert world.holds.held_courses() == [(COURSE, 1030.0)]


def test_a_blip_that_passes_is_dropped_and_the_next_read_published(world: World) -> None:
    world.rebuilder.rebuild(COURSE)
    world.up.empty_lists()
    world.rebuilder.rebuild(COURSE)
    world.up.records = world.up.good
    world.up.now += 30
    out = world.rebuilder.rebuild(COURSE)
    assert (out.outcome, out.reason) == ("stored", "recovered")
    assert world.holds.held(COURSE) is None and world.holds.held_courses() == []


def test_the_same_answer_after_the_delay_is_real_and_published(world: World) -> None:
    world.rebuilder.rebuild(COURSE)
    world.up.empty_lists()
    world.rebuilder.rebuild(COURSE)
    world.up.now += 5
    early = world.rebuilder.rebuild(COURSE)  # an event's rebuild right after the hold
    assert (early.outcome, early.confirm_in_s) == ("holding", 25.0)
    world.up.now += 25
    out = world.rebuilder.rebuild(COURSE)
    assert (out.outcome, out.reason) == ("stored", "confirmed")
    doc = world.store.read_doc(COURSE)
    assert doc is not None and doc["units"] == []
    assert world.holds.held(COURSE) is None


def test_a_differing_read_is_held_again_with_backoff_then_given_up(world: World) -> None:
    world.rebuilder.rebuild(COURSE)
    good_generation = world.store.generation(COURSE)
    world.up.empty_lists()
    world.rebuilder.rebuild(COURSE)
    delays = []
    for shape in ((1, 1, 1), (1, 1, 2)):  # each read suspicious, and unlike the one held
        world.up.now += 60
        world.up.records = synthetic(*shape)
        out = world.rebuilder.rebuild(COURSE)
        assert out.outcome == "held"
        delays.append(out.confirm_in_s)
    assert delays == [60.0, 120.0]
    world.up.now += 200
    world.up.records = synthetic(1, 2, 1)
    out = world.rebuilder.rebuild(COURSE)
    assert (out.outcome, out.reason) == ("dropped", "gave_up")
    assert world.holds.held(COURSE) is None
    assert world.store.generation(COURSE) == good_generation


def test_a_transient_404_keeps_the_bundle_and_a_confirmed_one_deletes(world: World) -> None:
    good = world.rebuilder.rebuild(COURSE)
    world.up.records = None
    out = world.rebuilder.rebuild(COURSE)
    assert (out.outcome, out.reason) == ("held", "not_found")
    assert world.store.generation(COURSE) == good.generation
    world.up.now += 29
    assert world.rebuilder.rebuild(COURSE).outcome == "holding"
    world.up.now += 1
    gone = world.rebuilder.rebuild(COURSE)
    assert (gone.outcome, gone.reason) == ("not_found", "confirmed")
    assert world.store.read(COURSE) is None and world.holds.held(COURSE) is None


def test_a_404_followed_by_the_course_again_keeps_serving_it(world: World) -> None:
    world.rebuilder.rebuild(COURSE)
    records = world.up.records
    world.up.records = None
    world.rebuilder.rebuild(COURSE)
    world.up.records = records
    out = world.rebuilder.rebuild(COURSE)
    assert (out.outcome, out.reason) == ("stored", "recovered")


def test_a_course_reported_tobedeleted_is_deleted_at_once(world: World) -> None:
    world.rebuilder.rebuild(COURSE)
    world.up.records, world.up.status_gone = None, "tobedeleted"
    out = world.rebuilder.rebuild(COURSE)
    assert (out.outcome, out.reason) == ("not_found", "tobedeleted")
    assert world.store.read(COURSE) is None


def test_a_large_removal_with_its_delete_events_publishes_at_once(world: World) -> None:
    world.rebuilder.rebuild(COURSE)
    world.up.records = synthetic(1, 3, 3)  # u1 and u2 deleted upstream
    world.holds.note_removals(COURSE, ["component:u1", "component:u2"])
    out = world.rebuilder.rebuild(COURSE)
    assert out.outcome == "stored" and out.units == 1
    assert world.holds.removals(COURSE) == []  # the evidence was used up by the publish


def test_the_same_removal_without_events_is_held(world: World) -> None:
    world.rebuilder.rebuild(COURSE)
    world.up.records = synthetic(1, 3, 3)
    out = world.rebuilder.rebuild(COURSE)
    assert (out.outcome, out.reason) == ("held", "lessons_lost")


def test_a_pinned_course_is_rebuilt_and_recorded_but_never_swapped(world: World) -> None:
    good = world.rebuilder.rebuild(COURSE)
    world.holds.pin(COURSE, "bad upstream import")
    world.up.records = synthetic(3, 3, 4)  # an ordinary change
    out = world.rebuilder.rebuild(COURSE)
    assert (out.outcome, out.reason) == ("pinned", "pinned")
    assert world.store.generation(COURSE) == good.generation
    held = world.holds.held(COURSE)
    assert held is not None and held.reason == "pinned" and held.doc() is not None
    assert world.holds.held_courses() == []  # nothing to confirm
    world.up.records = None
    assert world.rebuilder.rebuild(COURSE).outcome == "pinned"  # not even a 404 deletes it
    assert world.store.read(COURSE) is not None
    world.holds.unpin(COURSE)
    world.up.records = synthetic(3, 3, 4)
    assert world.rebuilder.rebuild(COURSE).outcome == "stored"


def test_earlier_generations_are_kept_and_a_rollback_swaps_one_in_higher(world: World) -> None:
    digests = []
    for per_lesson in (1, 2, 3, 4, 5):
        world.up.records = synthetic(3, 3, per_lesson)
        world.rebuilder.rebuild(COURSE)
        digests.append(world.live_digest())
    kept = world.store.kept(COURSE)
    assert len(kept) == 3
    live = world.store.generation(COURSE)
    assert live is not None and all(k.generation < live for k in kept)
    oldest = kept[-1]
    doc = world.store.kept_doc(COURSE, oldest.generation)
    assert doc is not None and doc["totals"]["resources"] == oldest.totals["resources"]
    back = world.rebuilder.republish(COURSE, doc, reason="rollback")
    assert back.outcome == "stored" and back.generation > live
    assert world.live_digest() == digests[1]  # the third-newest kept: per_lesson 2


def test_a_rebuild_that_changed_nothing_does_not_push_out_a_kept_version(world: World) -> None:
    world.up.records = synthetic(3, 3, 1)
    world.rebuilder.rebuild(COURSE)
    world.up.records = synthetic(3, 3, 2)
    world.rebuilder.rebuild(COURSE)
    for _ in range(5):
        world.rebuilder.rebuild(COURSE)
    kept = world.store.kept(COURSE)
    assert (
        len(kept) == 1
        and kept[0].totals["resources"] != world.store.read_doc(COURSE)["totals"]["resources"]
    )  # type: ignore[index]


def test_a_delete_removes_hold_and_pin(world: World) -> None:
    world.rebuilder.rebuild(COURSE)
    world.holds.pin(COURSE)
    world.up.empty_lists()
    world.rebuilder.rebuild(COURSE)
    world.store.delete(COURSE)
    assert world.holds.pinned(COURSE) is None and world.holds.held(COURSE) is None
    assert world.holds.counts() == (0, 0)


def test_the_held_digest_is_the_content_digest(world: World) -> None:
    world.rebuilder.rebuild(COURSE)
    world.up.empty_lists()
    world.rebuilder.rebuild(COURSE)
    held = world.holds.held(COURSE)
    assert held is not None and held.zstd is not None
    doc = held.doc()
    assert doc is not None
    from core.bundle.codec import encode_bundle

    assert content_digest(encode_bundle(doc).json) == held.digest
