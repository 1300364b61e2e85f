"""What an event asks the worker to do (events.md, "What the worker does"); pure."""

from __future__ import annotations

from core.events.model import CourseEvent


def is_course_delete(event: CourseEvent) -> bool:
    """``course.deleted``: remove the course's bundle and indexes instead of rebuilding."""
    return event.entity == "course" and event.action == "deleted"


def direct_courses(event: CourseEvent) -> list[str]:
    """The courses the event names: ``data.courseId`` then ``data.previousCourseId``, unique."""
    named = (event.course_id, event.previous_course_id)
    return list(dict.fromkeys(c for c in named if c))


def needs_resource_lookup(event: CourseEvent) -> bool:
    """``resource.*`` without a course: the courses linking the resource must be found."""
    return event.entity == "resource" and not event.course_id


_REMOVAL_KIND = {
    "courseComponent": "component",
    "componentResource": "link",
    "resource": "resource",
}


def removal_evidence(event: CourseEvent, courses: list[str]) -> dict[str, list[str]]:
    """Deletions the event proves, per affected course (``kind:ID``), for publish validation.

    A ``*.deleted`` of a component, link or resource is evidence for every affected course; an
    update that moved a component or link away (``previousCourseId``) is evidence for the course
    it left. docs/bundle.md "Publish safety" says how a validation uses it.
    """
    kind = _REMOVAL_KIND.get(event.entity)
    if kind is None:
        return {}
    member = f"{kind}:{event.subject}"
    if event.action == "deleted":
        return {course_id: [member] for course_id in courses}
    left = event.previous_course_id
    if left and left != event.course_id and kind != "resource":
        return {left: [member]}
    return {}
