"""Lookups over one bundle: units, lessons, resources, (kind, slug) places and the summary."""

from __future__ import annotations

import pytest

from core.bundle.index import BundleIndex, LocatedResource
from tests.core.bundle.records import Catalog, link


@pytest.fixture
def index() -> BundleIndex:
    cat = Catalog()
    cat.unit("u2", slug="geometry", sort=2)
    cat.lesson("l3", "u2", slug="angles")
    cat.item("l3", "r-angles-video", "Video", slug="angles-intro")
    cat.unit("u1", slug="ratios", sort=1)
    cat.lesson("l1", "u1", slug="intro", sort=1)
    cat.lesson("l2", "u1", slug="rates", sort=2)
    cat.item("l1", "r-video", "Video", slug="ratios", sort=1, xp=2)
    cat.item("l1", "r-exercise", "Exercise", slug="ratios", sort=2, xp=4)
    cat.item("l2", "r-quiz", "Quiz", slug="quiz-1", xp=10)
    cat.links.append(link("cr-again", "l2", "r-video", sort=5))
    cat.item(cat.unit("holder", sort=9), "r-cc", "CourseChallenge", slug="final", xp=20)
    return BundleIndex.from_doc(cat.build().doc)


def test_unit_and_lesson_are_found_by_their_slugs(index: BundleIndex) -> None:
    unit = index.unit("ratios")
    lesson = index.lesson("ratios", "rates")

    assert unit is not None and unit["sourcedId"] == "u1"
    assert [le["slug"] for le in unit["lessons"]] == ["intro", "rates"]
    assert lesson is not None and lesson["sourcedId"] == "l2"
    assert index.unit("nope") is None
    assert index.lesson("geometry", "rates") is None  # the lesson slug lives in another unit


def test_resource_is_found_with_where_it_sits(index: BundleIndex) -> None:
    located = index.resource("r-quiz")

    assert located is not None
    assert (located.unit_slug, located.lesson_slug) == ("ratios", "rates")
    assert located.resource["componentResourceId"] == "cr-r-quiz"
    assert located.resource["path"] == "/math/algebra/ratios/rates/quiz/quiz-1"
    assert index.resource("missing") is None


def test_a_resource_linked_twice_is_found_at_its_first_place(index: BundleIndex) -> None:
    located = index.resource("r-video")

    assert located is not None
    assert (located.lesson_slug, located.resource["componentResourceId"]) == ("intro", "cr-r-video")
    assert [p.lesson_slug for p in index.by_kind_slug("video", "ratios")] == ["intro", "rates"]


def test_the_course_challenge_sits_in_no_unit(index: BundleIndex) -> None:
    located = index.resource("r-cc")

    assert located == LocatedResource(index.doc["courseChallenge"], None, None)
    assert index.by_kind_slug("course-challenge", "final") == [located]


def test_kind_and_slug_are_needed_together(index: BundleIndex) -> None:
    videos = index.by_kind_slug("video", "ratios")
    exercises = index.by_kind_slug("exercise", "ratios")

    assert {p.resource["resourceId"] for p in videos} == {"r-video"}
    assert [p.resource["resourceId"] for p in exercises] == ["r-exercise"]
    assert index.by_kind_slug("article", "ratios") == []


def test_by_kind_slug_returns_a_copy(index: BundleIndex) -> None:
    index.by_kind_slug("quiz", "quiz-1").clear()

    assert len(index.by_kind_slug("quiz", "quiz-1")) == 1


def test_summary_is_the_subject_listing_line(index: BundleIndex) -> None:
    assert index.summary() == {
        "courseId": "course-1",
        "slug": "algebra",
        "title": "Course course-1",
        "generation": 1,
        "totals": {"units": 2, "lessons": 3, "resources": 6, "xp": 38},
    }


def test_lookups_return_the_objects_of_the_document(index: BundleIndex) -> None:
    assert index.unit("geometry") is index.doc["units"][1]
    assert index.lesson("ratios", "intro") is index.doc["units"][0]["lessons"][0]


def test_an_empty_bundle_indexes_to_nothing() -> None:
    index = BundleIndex.from_doc(Catalog().build().doc)

    assert index.unit("any") is None
    assert index.resource("any") is None
    assert index.by_kind_slug("video", "any") == []
    assert index.summary()["totals"] == {"units": 0, "lessons": 0, "resources": 0, "xp": 0}
