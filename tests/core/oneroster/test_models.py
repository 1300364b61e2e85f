"""The record models accept both dialects (official 1.2 and legacy/Timeback servers)."""

from __future__ import annotations

import datetime as dt

import pytest

from core.oneroster.models import (
    AssessmentResult,
    ComponentResource,
    Course,
    CourseComponent,
    Resource,
    TokenResponse,
)

OFFICIAL_REF = {
    "sourcedId": "u1",
    "href": "https://x/courses/components/u1",
    "type": "courseComponent",
}


def test_lesson_parent_from_parent_or_legacy_course_component() -> None:
    official = CourseComponent.model_validate(
        {"sourcedId": "l1", "course": {"sourcedId": "c1"}, "parent": OFFICIAL_REF}
    )
    legacy = CourseComponent.model_validate(
        {"sourcedId": "l1", "course": {"sourcedId": "c1"}, "courseComponent": {"sourcedId": "u1"}}
    )
    both = CourseComponent.model_validate(
        {
            "sourcedId": "l1",
            "course": {"sourcedId": "c1"},
            "parent": {"sourcedId": "u1"},
            "courseComponent": {"sourcedId": "other"},
        }
    )
    assert official.parent == legacy.parent == both.parent
    assert official.parent is not None and official.parent.sourcedId == "u1"


def test_a_unit_has_no_parent() -> None:
    unit = CourseComponent.model_validate(
        {"sourcedId": "u1", "course": {"sourcedId": "c1"}, "parent": None, "sortOrder": "3"}
    )
    assert unit.parent is None
    assert unit.sortOrder == 3


def test_references_keep_only_the_id() -> None:
    link = ComponentResource.model_validate(
        {
            "sourcedId": "cr1",
            "courseComponent": OFFICIAL_REF,
            "resource": {"sourcedId": "r1", "href": "/resources/r1", "type": "resource"},
            "sortOrder": 2,
        }
    )
    assert (link.courseComponent.sourcedId, link.resource.sourcedId) == ("u1", "r1")


@pytest.mark.parametrize(
    ("status", "active"),
    [("active", True), ("Active", True), ("tobedeleted", False), ("inactive", False)],
)
def test_inactive_counts_as_deleted(status: str, active: bool) -> None:
    assert Course.model_validate({"sourcedId": "c1", "status": status}).is_active is active


def test_metadata_null_or_not_an_object_reads_as_empty() -> None:
    metadata: object
    for metadata in (None, "junk", []):
        record = Resource.model_validate({"sourcedId": "r1", "metadata": metadata})
        assert record.metadata is None
        assert record.meta("khanSlug") is None


def test_course_slug_and_subject() -> None:
    course = Course.model_validate(
        {"sourcedId": "c1", "metadata": {"khanSlug": "algebra", "subject": "math"}}
    )
    assert (course.slug, course.subject) == ("algebra", "math")
    # subjects[] holds display names, so it is no fallback for the subject slug
    assert Course.model_validate({"sourcedId": "c2", "subjects": ["Science"]}).subject is None


def _result(**fields: object) -> AssessmentResult:
    base: dict[str, object] = {
        "sourcedId": "ar1",
        "assessmentLineItem": {"sourcedId": "r1_ali"},
        "student": {"sourcedId": "u1"},
    }
    return AssessmentResult.model_validate({**base, **fields})


def test_score_date_may_be_a_date_or_a_date_time() -> None:
    assert _result(scoreDate="2024-05-01").scoreDate == dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    stamped = _result(scoreDate="2024-05-01T10:30:00.000Z").scoreDate
    assert stamped == dt.datetime(2024, 5, 1, 10, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("metadata", "attempt"),
    [
        ({"attempt": 3}, 3),
        ({"attempt": "4"}, 4),
        ({"attempt": True}, None),
        ({}, None),
        (None, None),
    ],
)
def test_attempt_number_from_metadata(metadata: object, attempt: int | None) -> None:
    assert _result(metadata=metadata).attempt == attempt


def test_token_lifetime_defaults_to_an_hour() -> None:
    assert TokenResponse.model_validate({"access_token": "t"}).expires_in == 3600
