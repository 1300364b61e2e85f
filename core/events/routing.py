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
