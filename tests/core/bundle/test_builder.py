"""The bundle builder: placement, order, soft deletes, skipped records, paths, totals."""

from __future__ import annotations

import datetime as dt
import random

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from core.bundle.builder import CourseMetadataError, SkippedRecord, build_bundle
from core.bundle.index import BundleIndex
from core.bundle.kinds import resource_kind
from core.bundle.limits import (
    MAX_TITLE_CHARS,
    MAX_URL_CHARS,
    MAX_YOUTUBE_ID_CHARS,
    BundleLimits,
)
from core.bundle.paths import course_challenge_path, resource_path
from core.errors import BundleError, BundleTooLarge, CourseNotFound
from core.oneroster.models import CourseRecords
from core.settings import Settings
from tests.core.bundle.records import (
    BUILT_AT,
    Catalog,
    build,
    component,
    course,
    link,
    resource,
    synthetic,
)

DELETED = pytest.mark.parametrize("status", ["tobedeleted", "inactive"])


def _slugs(entries: list) -> list[str]:
    return [e["slug"] for e in entries]


def _skips(result) -> set[tuple[str, str, str]]:
    return {(s.entity, s.sourced_id, s.reason) for s in result.skipped}


def _only_lesson(result) -> dict:
    (unit,) = result.doc["units"]
    (lesson,) = unit["lessons"]
    return lesson


# --- the document ----------------------------------------------------------------------------
def test_one_video_course_has_the_documented_shape() -> None:
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1", sort=1), sort=1)
    cat.item("l1", "r1", "Video", slug="intro", xp=5, sort=1, link_id="cr1", youtubeId="yt1")

    doc = build(cat.records(), generation=17).doc

    assert doc == {
        "schemaVersion": 1,
        "courseId": "course-1",
        "generation": 17,
        "builtAt": "2026-11-22T10:15:03.420Z",
        "course": {
            "sourcedId": "course-1",
            "slug": "algebra",
            "title": "Course course-1",
            "subject": "math",
        },
        "units": [
            {
                "sourcedId": "u1",
                "slug": "u1",
                "title": "Title u1",
                "sortOrder": 1,
                "lessons": [
                    {
                        "sourcedId": "l1",
                        "slug": "l1",
                        "title": "Title l1",
                        "sortOrder": 1,
                        "resources": [
                            {
                                "componentResourceId": "cr1",
                                "resourceId": "r1",
                                "slug": "intro",
                                "title": "Title r1",
                                "kind": "video",
                                "sortOrder": 1,
                                "xp": 5,
                                "path": "/math/algebra/u1/l1/v/intro",
                                "youtubeId": "yt1",
                            }
                        ],
                    }
                ],
            }
        ],
        "courseChallenge": None,
        "totals": {"units": 1, "lessons": 1, "resources": 1, "xp": 5},
        "skipped": 0,
    }
    assert orjson.loads(orjson.dumps(doc)) == doc


def test_empty_course_is_a_valid_bundle_with_zero_totals() -> None:
    result = Catalog().build()

    assert result.doc["units"] == []
    assert result.doc["courseChallenge"] is None
    assert result.doc["totals"] == {"units": 0, "lessons": 0, "resources": 0, "xp": 0}
    assert result.doc["skipped"] == 0
    assert result.skipped == ()
    assert result.resource_ids == frozenset()
    assert orjson.loads(orjson.dumps(result.doc)) == result.doc


def test_built_at_is_utc_with_milliseconds_whatever_the_zone_given() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    built_at = dt.datetime(2026, 11, 22, 12, 15, 3, 420999, tzinfo=plus_two)

    doc = build_bundle(Catalog().records(), generation=3, built_at=built_at).doc

    assert doc["builtAt"] == "2026-11-22T10:15:03.420Z"
    assert doc["generation"] == 3


# --- order -----------------------------------------------------------------------------------
def test_children_are_ordered_by_sort_order_then_sourced_id() -> None:
    cat = Catalog()
    cat.unit("u-b", sort=1)
    cat.unit("u-a", sort=1)
    cat.unit("u-0", sort=0)
    cat.lesson("l-z", "u-a", sort=2)
    cat.lesson("l-y", "u-a", sort=2)
    cat.lesson("l-x", "u-a", sort=3)
    for unit in ("u-b", "u-0"):
        cat.lesson(f"{unit}-l", unit)
    # Resources order by the *link's* sortOrder, then the link's sourcedId (not the resource's).
    cat.item("l-y", "r-1", sort=5, link_id="cr-b")
    cat.item("l-y", "r-2", sort=5, link_id="cr-a")
    cat.item("l-y", "r-3", sort=-1, link_id="cr-z")

    doc = cat.build().doc

    assert [u["sourcedId"] for u in doc["units"]] == ["u-0", "u-a", "u-b"]
    lessons = doc["units"][1]["lessons"]
    assert [le["sourcedId"] for le in lessons] == ["l-y", "l-z", "l-x"]
    assert [r["componentResourceId"] for r in lessons[0]["resources"]] == ["cr-z", "cr-a", "cr-b"]


def test_same_input_gives_the_same_bytes_in_any_record_order() -> None:
    records = synthetic(units=3, lessons=3, per_lesson=4)
    first = build(records)
    shuffled = CourseRecords(
        course=records.course,
        components=random.Random(1).sample(records.components, len(records.components)),
        component_resources=random.Random(2).sample(
            records.component_resources, len(records.component_resources)
        ),
        resources=random.Random(3).sample(records.resources, len(records.resources)),
    )

    second = build(shuffled)

    assert orjson.dumps(first.doc) == orjson.dumps(second.doc)
    assert first.skipped == second.skipped
    assert first.resource_ids == second.resource_ids


def test_only_built_at_and_generation_differ_between_rebuilds() -> None:
    records = synthetic(units=2, lessons=2, per_lesson=3)
    first = build_bundle(records, generation=1, built_at=BUILT_AT).doc
    later = BUILT_AT + dt.timedelta(minutes=5)

    second = build_bundle(records, generation=2, built_at=later).doc

    assert second["generation"] == 2
    assert second["builtAt"] != first["builtAt"]
    assert {**second, "generation": 1, "builtAt": first["builtAt"]} == first


# --- soft deletes ----------------------------------------------------------------------------
@DELETED
def test_deleted_records_vanish_without_counting_as_skipped(status: str) -> None:
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1"))
    cat.item("l1", "kept")
    cat.item("l1", "unlinked", link_status=status)
    cat.unit("u-gone", status=status)
    cat.lesson("l-gone", "u-gone", status=status)
    cat.item("l-gone", "r-gone", link_status=status)
    cat.lesson("l1-gone", "u1", status=status)

    result = cat.build()

    assert _slugs(result.doc["units"]) == ["u1"]
    assert [r["resourceId"] for r in _only_lesson(result)["resources"]] == ["kept"]
    assert result.doc["skipped"] == 0


@DELETED
def test_active_records_under_a_deleted_parent_are_dropped_and_counted(status: str) -> None:
    cat = Catalog()
    cat.unit("u-gone", status=status)
    cat.lesson("orphan", "u-gone")
    cat.item("orphan", "r-under-orphan")
    cat.lesson("l1", cat.unit("u1"))
    cat.lesson("l-gone", "u1", status=status)
    cat.item("l-gone", "r-under-deleted-lesson")

    result = cat.build()

    assert _skips(result) == {
        ("courseComponent", "orphan", "parent_inactive"),
        ("componentResource", "cr-r-under-orphan", "component_skipped"),
        ("componentResource", "cr-r-under-deleted-lesson", "component_inactive"),
    }
    assert result.doc["skipped"] == 3
    assert _slugs(result.doc["units"]) == ["u1"]


@DELETED
def test_a_link_to_a_deleted_resource_is_dropped_and_counted(status: str) -> None:
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1"))
    cat.item("l1", "r-gone", status=status)
    cat.item("l1", "r-ok")

    result = cat.build()

    assert [r["resourceId"] for r in _only_lesson(result)["resources"]] == ["r-ok"]
    assert _skips(result) == {("componentResource", "cr-r-gone", "resource_inactive")}


@DELETED
def test_a_deleted_course_is_not_found(status: str) -> None:
    with pytest.raises(CourseNotFound) as caught:
        build(CourseRecords(course=course(status=status)))
    assert caught.value.context["course_id"] == "course-1"


# --- missing or invalid metadata -----------------------------------------------------------
def test_a_unit_without_slug_is_skipped_with_everything_under_it() -> None:
    cat = Catalog()
    cat.unit("u-bad", metadata=None)
    cat.lesson("l-under", "u-bad")
    cat.item("l-under", "r-under")
    cat.lesson("l1", cat.unit("u1"))
    cat.item("l1", "r1", xp=3)

    with capture_logs() as logs:
        result = cat.build()

    assert _skips(result) == {
        ("courseComponent", "u-bad", "missing_slug"),
        ("courseComponent", "l-under", "parent_skipped"),
        ("componentResource", "cr-r-under", "component_skipped"),
    }
    assert result.doc["skipped"] == 3
    assert result.doc["totals"] == {"units": 1, "lessons": 1, "resources": 1, "xp": 3}
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 3
    assert all(e["outcome"] == "skipped" and e["course_id"] == "course-1" for e in warnings)
    assert {e["reason"] for e in warnings} == {
        "missing_slug",
        "parent_skipped",
        "component_skipped",
    }
    assert all({"unit_id", "resource_id"} <= set(e) for e in warnings)


def test_a_lesson_with_an_invalid_slug_is_skipped_with_its_links() -> None:
    cat = Catalog()
    unit = cat.unit("u1")
    cat.lesson("l-bad", unit, slug="a/b")
    cat.item("l-bad", "r-under")
    cat.lesson("l-ok", unit)
    cat.item("l-ok", "r-ok")

    result = cat.build()

    assert _slugs(result.doc["units"][0]["lessons"]) == ["l-ok"]
    assert _skips(result) == {
        ("courseComponent", "l-bad", "invalid_slug"),
        ("componentResource", "cr-r-under", "component_skipped"),
    }


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"metadata": None}, "resource_missing_metadata"),
        ({"slug": None}, "resource_missing_slug"),
        ({"slug": ""}, "resource_invalid_slug"),
        ({"slug": "has space"}, "resource_invalid_slug"),
        ({"slug": 42}, "resource_invalid_slug"),
        ({"activity": "Podcast"}, "resource_unknown_kind"),
        ({"metadata": {"khanSlug": "x", "type": "qti"}}, "resource_unknown_kind"),
        ({"metadata": {"khanSlug": "x", "type": "interactive"}}, "resource_unknown_kind"),
    ],
)
def test_a_resource_with_bad_metadata_is_left_out_and_counted(kwargs: dict, reason: str) -> None:
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1"))
    kwargs = {"activity": "Video", **kwargs}
    cat.item("l1", "r-bad", kwargs.pop("activity"), **kwargs)
    cat.item("l1", "r-ok")

    with capture_logs() as logs:
        result = cat.build()

    assert [r["resourceId"] for r in _only_lesson(result)["resources"]] == ["r-ok"]
    assert result.skipped == (SkippedRecord("componentResource", "cr-r-bad", reason),)
    assert result.doc["skipped"] == 1
    (warning,) = [e for e in logs if e["log_level"] == "warning"]
    assert warning["resource_id"] == "r-bad"
    assert warning["reason"] == reason


def test_links_to_missing_records_are_counted() -> None:
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1"))
    cat.links.append(link("cr-no-resource", "l1", "nowhere"))
    cat.resources.append(resource("r-ok"))
    cat.links.append(link("cr-no-component", "no-such-lesson", "r-ok"))
    cat.components.append(component("l-orphan", parent="no-such-unit"))

    result = cat.build()

    assert _skips(result) == {
        ("componentResource", "cr-no-resource", "resource_missing"),
        ("componentResource", "cr-no-component", "component_missing"),
        ("courseComponent", "l-orphan", "parent_missing"),
    }
    assert _only_lesson(result)["resources"] == []


def test_components_nested_below_a_lesson_are_counted() -> None:
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1"))
    cat.components.append(component("deep", parent="l1"))
    cat.item("deep", "r-deep")

    result = cat.build()

    assert _skips(result) == {
        ("courseComponent", "deep", "parent_not_unit"),
        ("componentResource", "cr-r-deep", "component_skipped"),
    }


def test_a_resource_linked_straight_to_a_unit_has_no_place() -> None:
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1"))
    cat.item("u1", "r-on-unit")

    result = cat.build()

    assert _skips(result) == {("componentResource", "cr-r-on-unit", "not_in_lesson")}


def test_a_bad_resource_linked_twice_counts_once_per_link() -> None:
    cat = Catalog()
    unit = cat.unit("u1")
    cat.lesson("l1", unit)
    cat.lesson("l2", unit)
    cat.item("l1", "r-bad", slug=None)
    cat.links.append(link("cr-again", "l2", "r-bad"))

    result = cat.build()

    assert result.doc["skipped"] == 2
    assert {s.sourced_id for s in result.skipped} == {"cr-r-bad", "cr-again"}


def test_components_of_another_course_are_ignored() -> None:
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1"))
    cat.components.append(component("foreign-unit", course_id="course-2"))

    result = cat.build()

    assert _slugs(result.doc["units"]) == ["u1"]
    assert result.doc["skipped"] == 0


@pytest.mark.parametrize(
    ("course_kwargs", "field"),
    [({"slug": None}, "slug"), ({"subject": None}, "subject"), ({"slug": "a/b"}, "slug")],
)
def test_a_course_without_slug_or_subject_cannot_be_built(course_kwargs: dict, field: str) -> None:
    with pytest.raises(CourseMetadataError) as caught:
        build(CourseRecords(course=course(**course_kwargs)))

    assert isinstance(caught.value, BundleError)
    assert caught.value.context == {"course_id": "course-1", "fields": [field]}


# --- kinds, shared slugs, paths --------------------------------------------------------------
@pytest.mark.parametrize(
    ("metadata", "kind"),
    [
        ({"khanActivityType": "Video", "type": "video"}, "video"),
        ({"khanActivityType": "Article", "type": "qti"}, "article"),
        ({"khanActivityType": "Exercise", "type": "interactive"}, "exercise"),
        ({"khanActivityType": "Quiz"}, "quiz"),
        ({"khanActivityType": "UnitTest"}, "unit-test"),
        ({"khanActivityType": "unit_test"}, "unit-test"),
        ({"khanActivityType": "CourseChallenge"}, "course-challenge"),
        ({"type": "video"}, "video"),
        ({"type": "qti"}, None),
        ({"type": "interactive"}, None),
        ({"khanActivityType": "Podcast", "type": "video"}, None),
        ({"khanActivityType": 3}, None),
        (None, None),
    ],
)
def test_resource_kind_reads_the_activity_type_then_the_type(metadata, kind) -> None:
    assert resource_kind(resource("r", metadata=metadata)) == kind


@pytest.mark.parametrize(
    ("activity", "segment"),
    [("Video", "v"), ("Article", "a"), ("Exercise", "e"), ("Quiz", "quiz"), ("UnitTest", "test")],
)
def test_each_kind_gets_its_canonical_path(activity: str, segment: str) -> None:
    cat = Catalog()
    cat.lesson("lesson-x", cat.unit("unit-y"))
    cat.item("lesson-x", "r1", activity, slug="the-slug")

    (entry,) = _only_lesson(cat.build())["resources"]

    assert entry["path"] == f"/math/algebra/unit-y/lesson-x/{segment}/the-slug"
    assert entry["path"] == resource_path(
        "math", "algebra", "unit-y", "lesson-x", entry["kind"], "the-slug"
    )


def test_resource_path_refuses_the_course_challenge_kind() -> None:
    with pytest.raises(BundleError):
        resource_path("math", "algebra", "u", "l", "course-challenge", "s")
    assert course_challenge_path("math", "algebra", "s") == "/math/algebra/test/s"


def test_a_video_and_an_exercise_sharing_a_slug_are_both_kept() -> None:
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1"))
    cat.item("l1", "r-video", "Video", slug="ratios", sort=1)
    cat.item("l1", "r-exercise", "Exercise", slug="ratios", sort=2)

    result = cat.build()
    index = BundleIndex.from_doc(result.doc)

    paths = [r["path"] for r in _only_lesson(result)["resources"]]
    assert paths == ["/math/algebra/u1/l1/v/ratios", "/math/algebra/u1/l1/e/ratios"]
    assert [p.resource["resourceId"] for p in index.by_kind_slug("video", "ratios")] == ["r-video"]
    assert [p.resource["resourceId"] for p in index.by_kind_slug("exercise", "ratios")] == [
        "r-exercise"
    ]


def test_legacy_parent_dialect_places_lessons_under_their_unit() -> None:
    cat = Catalog()
    cat.unit("u1")
    cat.components.append(component("l1", parent="u1", legacy_parent=True))
    cat.item("l1", "r1")

    result = cat.build()

    assert _only_lesson(result)["resources"][0]["path"] == "/math/algebra/u1/l1/v/r1"
    assert result.doc["skipped"] == 0


def test_resource_title_and_slug_come_from_the_resource_record() -> None:
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1"))
    cat.item("l1", "r1", slug="from-resource")

    (entry,) = _only_lesson(cat.build())["resources"]

    assert (entry["slug"], entry["title"]) == ("from-resource", "Title r1")


def test_a_resource_linked_in_two_lessons_appears_in_both() -> None:
    cat = Catalog()
    unit = cat.unit("u1")
    cat.lesson("l1", unit)
    cat.lesson("l2", unit)
    cat.item("l1", "shared")
    cat.links.append(link("cr-2", "l2", "shared"))

    result = cat.build()

    lessons = result.doc["units"][0]["lessons"]
    assert [le["resources"][0]["path"] for le in lessons] == [
        "/math/algebra/u1/l1/v/shared",
        "/math/algebra/u1/l2/v/shared",
    ]
    assert result.doc["totals"]["resources"] == 2
    assert result.resource_ids == frozenset({"shared"})


# --- course shapes ---------------------------------------------------------------------------
def test_lessons_with_only_videos_and_no_assessments_build_cleanly() -> None:
    cat = Catalog()
    for u in range(2):
        lesson = cat.lesson(f"l{u}", cat.unit(f"u{u}", sort=u))
        for r in range(3):
            cat.item(lesson, f"v{u}{r}", "Video", sort=r, xp=2)

    result = cat.build()

    kinds = {r["kind"] for u in result.doc["units"] for le in u["lessons"] for r in le["resources"]}
    assert kinds == {"video"}
    assert result.doc["courseChallenge"] is None
    assert result.doc["totals"] == {"units": 2, "lessons": 2, "resources": 6, "xp": 12}


def test_a_unit_without_lessons_is_not_shown() -> None:
    cat = Catalog()
    cat.unit("u-empty")
    cat.lesson("l1", cat.unit("u1"))

    result = cat.build()

    assert _slugs(result.doc["units"]) == ["u1"]
    assert result.doc["skipped"] == 0


def test_a_unit_whose_lessons_were_all_skipped_stays_empty() -> None:
    cat = Catalog()
    cat.lesson("l-bad", cat.unit("u1"), metadata={})

    result = cat.build()

    assert result.doc["units"][0]["lessons"] == []
    assert result.doc["totals"]["units"] == 1


def test_the_course_challenge_sits_apart_and_counts_in_resources_and_xp() -> None:
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1", sort=1))
    cat.item("l1", "r1", xp=5)
    holder = cat.unit("challenge-holder", sort=9, metadata=None)
    cat.item(holder, "cc", "CourseChallenge", slug="final", xp=50, link_id="cr-cc", sort=3)

    result = cat.build()

    assert _slugs(result.doc["units"]) == ["u1"]
    assert result.doc["courseChallenge"] == {
        "componentResourceId": "cr-cc",
        "resourceId": "cc",
        "slug": "final",
        "title": "Title cc",
        "kind": "course-challenge",
        "sortOrder": 3,
        "xp": 50,
        "path": "/math/algebra/test/final",
    }
    assert result.doc["totals"] == {"units": 1, "lessons": 1, "resources": 2, "xp": 55}
    assert result.doc["skipped"] == 0
    assert "cc" in result.resource_ids


def test_a_second_course_challenge_is_a_counted_duplicate() -> None:
    cat = Catalog()
    holder = cat.unit("holder")
    cat.item(holder, "cc-late", "CourseChallenge", sort=2)
    cat.item(holder, "cc-first", "CourseChallenge", sort=1)
    cat.item(holder, "stray-video", "Video")

    result = cat.build()

    assert result.doc["courseChallenge"]["resourceId"] == "cc-first"
    assert _skips(result) == {
        ("componentResource", "cr-cc-late", "duplicate_course_challenge"),
        ("componentResource", "cr-stray-video", "not_in_lesson"),
    }
    assert result.doc["totals"]["resources"] == 1


def test_a_course_challenge_inside_a_lesson_is_counted_not_placed() -> None:
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1"))
    cat.item("l1", "cc", "CourseChallenge")

    result = cat.build()

    assert result.doc["courseChallenge"] is None
    assert _skips(result) == {("componentResource", "cr-cc", "course_challenge_in_lesson")}


def test_a_course_challenge_without_slug_leaves_no_challenge_and_no_phantom_unit() -> None:
    cat = Catalog()
    cat.item(cat.unit("holder"), "cc", "CourseChallenge", slug=None)

    result = cat.build()

    assert result.doc["units"] == []
    assert result.doc["courseChallenge"] is None
    assert _skips(result) == {("componentResource", "cr-cc", "resource_missing_slug")}


# --- totals, xp, optional fields ------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "xp"),
    [(None, 0), (7, 7), ("7", 7), (3.0, 3), (-1, 0), (2.5, 0), ("lots", 0), (True, 0), (2**60, 0)],
)
def test_xp_is_an_int_and_bad_values_count_as_zero_without_dropping(raw, xp) -> None:
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1"))
    extra = {} if raw is None else {"xp": raw}
    cat.item("l1", "r1", **extra)

    with capture_logs() as logs:
        result = cat.build()

    (entry,) = _only_lesson(result)["resources"]
    assert entry["xp"] == xp
    assert result.doc["totals"]["xp"] == xp
    assert result.doc["skipped"] == 0
    defaulted = [e for e in logs if e.get("reason") == "invalid_xp"]
    assert len(defaulted) == (1 if raw is not None and xp == 0 and raw != 0 else 0)


def test_optional_fields_appear_only_when_oneroster_has_them() -> None:
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1"))
    cat.item("l1", "with", "Exercise", sort=1, questionCount=12, url="https://x/e", youtubeId="y")
    cat.item("l1", "without", "Exercise", sort=2)
    cat.item("l1", "malformed", "Exercise", sort=3, questionCount="many", url="", youtubeId=5)

    entries = _only_lesson(cat.build())["resources"]

    assert {k: entries[0][k] for k in ("questionCount", "url", "youtubeId")} == {
        "questionCount": 12,
        "url": "https://x/e",
        "youtubeId": "y",
    }
    for entry in entries[1:]:
        assert not {"questionCount", "url", "youtubeId"} & set(entry)


def test_resource_ids_cover_every_active_link_even_skipped_ones() -> None:
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1"))
    cat.item("l1", "ok")
    cat.item("l1", "bad", slug=None)
    cat.item("l1", "unlinked", link_status="tobedeleted")

    result = cat.build()

    assert result.resource_ids == frozenset({"ok", "bad"})


def test_source_modified_is_the_latest_change_including_deletes() -> None:
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1"))
    cat.item("l1", "r1", modified="2026-03-01T00:00:00Z")
    cat.item("l1", "r2", status="tobedeleted", modified="2026-04-01T12:00:00+02:00")

    result = cat.build()

    assert result.source_modified == "2026-04-01T10:00:00.000000Z"


# --- property --------------------------------------------------------------------------------
_STATUS = st.sampled_from(["active", "active", "active", "tobedeleted"])
_ACTIVITY = st.sampled_from(["Video", "Article", "Exercise", "Quiz", "UnitTest", "Podcast"])


@st.composite
def _catalogs(draw: st.DrawFn) -> Catalog:
    cat = Catalog(course=course(slug=draw(st.sampled_from(["algebra", "x7:geo"])), subject="math"))
    for u in range(draw(st.integers(0, 4))):
        unit = cat.unit(f"u{u}", sort=draw(st.integers(0, 2)), status=draw(_STATUS))
        for le in range(draw(st.integers(0, 3))):
            slug = draw(st.sampled_from([f"l{le}", "same", None]))
            lesson = cat.lesson(
                f"u{u}l{le}", unit, sort=draw(st.integers(0, 2)), slug=slug, status=draw(_STATUS)
            )
            for r in range(draw(st.integers(0, 4))):
                cat.item(
                    lesson,
                    f"u{u}l{le}r{r}",
                    draw(_ACTIVITY),
                    sort=draw(st.integers(0, 2)),
                    slug=draw(st.sampled_from(["s", "t", None])),
                    xp=draw(st.integers(-1, 9)),
                    status=draw(_STATUS),
                    link_status=draw(_STATUS),
                )
    if draw(st.booleans()):
        cat.item(cat.unit("holder", sort=99), "cc", "CourseChallenge", slug="final", xp=7)
    return cat


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_catalogs())
def test_property_totals_match_the_document_and_paths_stay_in_the_course(cat: Catalog) -> None:
    result = cat.build()
    doc = result.doc
    course_prefix = f"/{doc['course']['subject']}/{doc['course']['slug']}/"

    entries = [r for u in doc["units"] for le in u["lessons"] for r in le["resources"]]
    if doc["courseChallenge"] is not None:
        entries.append(doc["courseChallenge"])
    assert doc["totals"] == {
        "units": len(doc["units"]),
        "lessons": sum(len(u["lessons"]) for u in doc["units"]),
        "resources": len(entries),
        "xp": sum(e["xp"] for e in entries),
    }
    assert all(e["path"].startswith(course_prefix) for e in entries)
    assert doc["skipped"] == len(result.skipped) == len(set(result.skipped))
    placed = {e["componentResourceId"] for e in entries}
    skipped_links = {s.sourced_id for s in result.skipped if s.entity == "componentResource"}
    assert not placed & skipped_links
    assert orjson.loads(orjson.dumps(doc)) == doc


# --- ids and size bounds ---------------------------------------------------------------------
def test_records_with_ids_outside_the_id_rule_are_skipped_and_never_indexed() -> None:
    """Ids that reach Redis keys (the resource index) pass the event id rule, or are skipped."""
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1"))
    cat.lesson("l@2", "u1", slug="second")  # a valid slug, an id no event could name
    cat.item("l@2", "r-under-bad-lesson")
    cat.lesson("l3", cat.unit("u 2", slug="third"))
    cat.item("l1", "r ok?", link_id="cr-bad-resource-id")
    cat.item("l1", "..", link_id="cr-dots")
    cat.item("l1", "r1", link_id="cr{1}")
    cat.item("l1", "r-ok")
    long_id = "r" * 201
    cat.item("l1", long_id, link_id="cr-long")

    with capture_logs() as logs:
        result = cat.build()

    assert [r["resourceId"] for r in _only_lesson_of(result, "l1")] == ["r-ok"]
    assert _skips(result) == {
        ("courseComponent", "l@2", "invalid_id"),
        ("courseComponent", "u 2", "invalid_id"),
        ("courseComponent", "l3", "parent_skipped"),
        ("componentResource", "cr-r-under-bad-lesson", "component_skipped"),
        ("componentResource", "cr-bad-resource-id", "resource_invalid_id"),
        ("componentResource", "cr-dots", "resource_invalid_id"),
        ("componentResource", "cr{1}", "invalid_id"),
        ("componentResource", "cr-long", "resource_invalid_id"),
    }
    assert result.doc["skipped"] == 8
    assert result.resource_ids == frozenset({"r-ok", "r-under-bad-lesson"})
    warned = {e["sourced_id"]: e for e in logs if e.get("outcome") == "skipped"}
    assert warned["cr-long"]["resource_id"] == long_id[:200] + "…"
    assert warned["cr-long"]["course_id"] == "course-1"


def _only_lesson_of(result, lesson_id: str) -> list:
    return [
        entry
        for unit in result.doc["units"]
        for lesson in unit["lessons"]
        if lesson["sourcedId"] == lesson_id
        for entry in lesson["resources"]
    ]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("title", "t" * (MAX_TITLE_CHARS + 1), "resource_title_too_long"),
        ("url", "https://x/" + "u" * MAX_URL_CHARS, "resource_url_too_long"),
        ("youtubeId", "y" * (MAX_YOUTUBE_ID_CHARS + 1), "resource_youtube_id_too_long"),
    ],
)
def test_a_resource_with_an_oversize_field_is_skipped_and_reported(
    field: str, value: str, reason: str
) -> None:
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1"))
    cat.item("l1", "r-ok", title="t" * MAX_TITLE_CHARS, url="https://x/ok", youtubeId="y" * 11)
    big = resource("r-big", "Video", **({} if field == "title" else {field: value}))
    if field == "title":
        big = big.model_copy(update={"title": value})
    cat.resources.append(big)
    cat.links.append(link("cr-big", "l1", "r-big", sort=1))

    with capture_logs() as logs:
        result = cat.build()

    assert [r["resourceId"] for r in _only_lesson(result)["resources"]] == ["r-ok"]
    assert result.skipped == (SkippedRecord("componentResource", "cr-big", reason),)
    (warning,) = [e for e in logs if e["log_level"] == "warning"]
    assert (warning["course_id"], warning["resource_id"], warning["reason"]) == (
        "course-1",
        "r-big",
        reason,
    )


def test_a_component_with_an_oversize_title_is_skipped_with_what_it_holds() -> None:
    cat = Catalog()
    cat.unit("u1")
    cat.lesson("l1", "u1")
    cat.item("l1", "r1")
    cat.components.append(component("u2").model_copy(update={"title": "T" * (MAX_TITLE_CHARS + 1)}))
    cat.lesson("l2", "u2")
    cat.item("l2", "r2")

    result = cat.build()

    assert [u["sourcedId"] for u in result.doc["units"]] == ["u1"]
    assert _skips(result) == {
        ("courseComponent", "u2", "title_too_long"),
        ("courseComponent", "l2", "parent_skipped"),
        ("componentResource", "cr-r2", "component_skipped"),
    }


def test_a_course_with_an_oversize_title_cannot_be_built() -> None:
    records = CourseRecords(
        course=course().model_copy(update={"title": "C" * (MAX_TITLE_CHARS + 1)})
    )
    with pytest.raises(CourseMetadataError) as caught:
        build(records)
    assert caught.value.context["fields"] == ["title"]
    assert caught.value.context["limit"] == MAX_TITLE_CHARS


def test_a_course_over_the_byte_cap_is_refused_naming_its_size_and_the_cap() -> None:
    records = synthetic(units=2, lessons=2, per_lesson=5)
    size = len(orjson.dumps(build(records).doc))

    assert (
        build_bundle(
            records, generation=1, built_at=BUILT_AT, limits=BundleLimits(max_bytes=size)
        ).doc["totals"]["resources"]
        == 25
    )
    with pytest.raises(BundleTooLarge) as caught:
        build_bundle(
            records, generation=1, built_at=BUILT_AT, limits=BundleLimits(max_bytes=size - 1)
        )

    error = caught.value
    assert isinstance(error, BundleError) and not error.retryable
    assert (error.size, error.limit) == (size, size - 1)
    assert error.context["course_id"] == "course-1"
    assert str(size) in str(error) and str(size - 1) in str(error)


def test_the_default_byte_cap_is_the_setting_default() -> None:
    assert BundleLimits.from_settings(Settings(_env_file=None)).max_bytes == 32 * 1024 * 1024
    assert BundleLimits.from_settings(Settings(_env_file=None, bundle_max_bytes=10)).max_bytes == 10
