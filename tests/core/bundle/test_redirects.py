"""Assessment redirects: URL parts -> the one canonical path, a miss, or the candidates."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from core.bundle.index import BundleIndex
from core.bundle.redirects import resolve_assessment_redirect
from core.errors import AmbiguousRedirect, LookupMiss
from tests.core.bundle.records import Catalog


@pytest.fixture
def index() -> BundleIndex:
    cat = Catalog()
    cat.unit("u1", slug="ratios", sort=1)
    cat.lesson("l1", "u1", slug="intro", sort=1)
    cat.lesson("l2", "u1", slug="practice", sort=2)
    cat.lesson("l3", "u1", slug="wrap-up", sort=3)
    cat.item("l1", "quiz-a", "Quiz", slug="quiz-1")
    cat.item("l2", "dup-1", "Quiz", slug="dup")
    cat.item("l3", "dup-2", "Quiz", slug="dup")
    cat.item("l3", "test", "UnitTest", slug="unit-test")
    cat.item("l1", "video", "Video", slug="video-slug")
    cat.unit("u2", slug="rates", sort=2)
    cat.lesson("l4", "u2", slug="more")
    cat.item("l4", "quiz-b", "Quiz", slug="quiz-2")
    cat.item(cat.unit("holder", sort=9), "cc", "CourseChallenge", slug="final")
    return BundleIndex.from_doc(cat.build().doc)


def _resolve(index: BundleIndex, **overrides: Any) -> str:
    args: dict[str, Any] = {
        "subject": "math",
        "course_slug": "algebra",
        "unit_slug": "ratios",
        "kind": "quiz",
        "slug": "quiz-1",
        **overrides,
    }
    return resolve_assessment_redirect(index, **args)


def test_a_quiz_resolves_to_its_lesson_path(index: BundleIndex) -> None:
    assert _resolve(index) == "/math/algebra/ratios/intro/quiz/quiz-1"


def test_a_unit_test_resolves_to_its_path(index: BundleIndex) -> None:
    path = _resolve(index, kind="unit-test", slug="unit-test")

    assert path == "/math/algebra/ratios/wrap-up/test/unit-test"


def test_the_course_challenge_resolves_without_a_unit(index: BundleIndex) -> None:
    path = _resolve(index, kind="course-challenge", slug="final", unit_slug=None)

    assert path == "/math/algebra/test/final"
    assert _resolve(index, kind="course-challenge", slug="final", unit_slug="") == path


def test_two_quizzes_with_one_slug_in_a_unit_are_ambiguous(index: BundleIndex) -> None:
    with capture_logs() as logs, pytest.raises(AmbiguousRedirect) as caught:
        _resolve(index, slug="dup")

    assert caught.value.candidates == [
        "/math/algebra/ratios/practice/quiz/dup",
        "/math/algebra/ratios/wrap-up/quiz/dup",
    ]
    assert [e["outcome"] for e in logs] == ["ambiguous"]


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"slug": "no-such-quiz"}, id="unknown slug"),
        pytest.param({"slug": "quiz-2"}, id="quiz of another unit"),
        pytest.param({"unit_slug": "no-such-unit"}, id="unknown unit"),
        pytest.param({"kind": "unit-test"}, id="a quiz slug asked as a unit test"),
        pytest.param({"slug": "video-slug"}, id="a video is no quiz"),
        pytest.param({"subject": "science"}, id="wrong subject"),
        pytest.param({"course_slug": "geometry"}, id="wrong course"),
        pytest.param({"unit_slug": None}, id="unit missing for a quiz"),
        pytest.param({"unit_slug": "", "kind": "unit-test", "slug": "unit-test"}, id="empty unit"),
        pytest.param(
            {"kind": "course-challenge", "slug": "final"}, id="unit given for a course challenge"
        ),
        pytest.param(
            {"kind": "course-challenge", "slug": "other", "unit_slug": None},
            id="unknown course challenge",
        ),
        pytest.param({"kind": "video"}, id="not an assessment kind"),
    ],
)
def test_nothing_matching_is_a_lookup_miss(index: BundleIndex, overrides: dict) -> None:
    with pytest.raises(LookupMiss) as caught:
        _resolve(index, **overrides)

    assert caught.value.context["kind"] == overrides.get("kind", "quiz")


def test_a_course_without_challenge_misses_it() -> None:
    cat = Catalog()
    cat.lesson("l1", cat.unit("u1"))
    index = BundleIndex.from_doc(cat.build().doc)

    with pytest.raises(LookupMiss):
        _resolve(index, kind="course-challenge", slug="final", unit_slug=None)
