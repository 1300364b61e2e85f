"""Routing: which courses an event touches, for every entity and action of the contract."""

from __future__ import annotations

from typing import Any

import pytest

from core.events.model import ACTIONS, ENTITIES
from core.events.routing import direct_courses, is_course_delete, needs_resource_lookup
from core.events.validate import validate_event
from tests.core.events.support import envelope


def event(entity: str, action: str, **data: Any) -> Any:
    return validate_event(envelope(type=f"oneroster.{entity}.{action}", data=data))


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("entity", ENTITIES)
def test_every_type_with_a_course_routes_to_that_course(entity: str, action: str) -> None:
    e = event(entity, action, courseId="course-42")
    assert is_course_delete(e) is (entity == "course" and action == "deleted")
    assert direct_courses(e) == ["course-42"]
    assert needs_resource_lookup(e) is False


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("entity", ENTITIES)
def test_previous_course_is_rebuilt_too(entity: str, action: str) -> None:
    e = event(entity, action, courseId="course-2", previousCourseId="course-1")
    assert direct_courses(e) == ["course-2", "course-1"]


def test_same_previous_course_is_named_once() -> None:
    e = event("courseComponent", "updated", courseId="c1", previousCourseId="c1")
    assert direct_courses(e) == ["c1"]


@pytest.mark.parametrize("action", ACTIONS)
def test_resource_without_course_needs_a_lookup(action: str) -> None:
    e = event("resource", action)
    assert direct_courses(e) == []
    assert needs_resource_lookup(e) is True
    assert is_course_delete(e) is False


def test_resource_with_only_previous_course_still_needs_a_lookup() -> None:
    e = event("resource", "updated", previousCourseId="old")
    assert direct_courses(e) == ["old"]
    assert needs_resource_lookup(e) is True


def test_only_course_deleted_is_a_course_delete() -> None:
    deletes = [
        (entity, action)
        for entity in ENTITIES
        for action in ACTIONS
        if is_course_delete(event(entity, action, courseId="c"))
    ]
    assert deletes == [("course", "deleted")]


def test_dot_only_course_ids_are_invalid() -> None:
    import pytest

    from core.errors import InvalidEvent
    from core.events.validate import validate_event

    for bad in (".", ".."):
        with pytest.raises(InvalidEvent, match=r"data\.courseId"):
            validate_event(
                {
                    "specversion": "1.0",
                    "id": "e1",
                    "source": "t",
                    "type": "oneroster.course.updated",
                    "subject": "c1",
                    "data": {"courseId": bad},
                }
            )
