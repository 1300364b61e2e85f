"""Hand-made OneRoster records for bundle tests, parsed from wire-shaped dicts like real ones."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from core.bundle.builder import BuildResult, build_bundle
from core.oneroster.models import (
    ComponentResource,
    Course,
    CourseComponent,
    CourseRecords,
    Resource,
)

COURSE_ID = "course-1"
BUILT_AT = dt.datetime(2026, 11, 22, 10, 15, 3, 420000, tzinfo=dt.UTC)
MODIFIED = "2026-01-01T00:00:00Z"
_DEFAULT: Any = object()


def course(
    sourced_id: str = COURSE_ID,
    *,
    slug: str | None = "algebra",
    subject: str | None = "math",
    status: str = "active",
    metadata: Any = _DEFAULT,
    modified: str = MODIFIED,
) -> Course:
    if metadata is _DEFAULT:
        metadata = {k: v for k, v in (("khanSlug", slug), ("subject", subject)) if v is not None}
    return Course.model_validate(
        {
            "sourcedId": sourced_id,
            "status": status,
            "dateLastModified": modified,
            "title": f"Course {sourced_id}",
            "metadata": metadata,
        }
    )


def component(
    sourced_id: str,
    *,
    parent: str | None = None,
    slug: Any = _DEFAULT,
    sort: int = 0,
    status: str = "active",
    metadata: Any = _DEFAULT,
    course_id: str = COURSE_ID,
    legacy_parent: bool = False,
    modified: str = MODIFIED,
) -> CourseComponent:
    """A unit (no parent) or lesson; ``legacy_parent`` names the parent ``courseComponent``."""
    if metadata is _DEFAULT:
        metadata = {"khanSlug": sourced_id if slug is _DEFAULT else slug}
    data: dict[str, Any] = {
        "sourcedId": sourced_id,
        "status": status,
        "dateLastModified": modified,
        "title": f"Title {sourced_id}",
        "course": {"sourcedId": course_id, "type": "course"},
        "sortOrder": sort,
        "metadata": metadata,
    }
    ref = None if parent is None else {"sourcedId": parent, "type": "courseComponent"}
    if legacy_parent:
        data["courseComponent"] = ref
    else:
        data["parent"] = ref
    return CourseComponent.model_validate(data)


def resource(
    sourced_id: str,
    activity: str | None = "Video",
    *,
    slug: Any = _DEFAULT,
    status: str = "active",
    metadata: Any = _DEFAULT,
    modified: str = MODIFIED,
    **extra: Any,
) -> Resource:
    """A resource; ``activity`` is ``khanActivityType`` and ``extra`` more metadata (xp, ...)."""
    if metadata is _DEFAULT:
        metadata = {"khanSlug": sourced_id if slug is _DEFAULT else slug, **extra}
        if activity is not None:
            metadata["khanActivityType"] = activity
            metadata.setdefault("type", "video" if activity == "Video" else "qti")
    return Resource.model_validate(
        {
            "sourcedId": sourced_id,
            "status": status,
            "dateLastModified": modified,
            "title": f"Title {sourced_id}",
            "metadata": metadata,
        }
    )


def link(
    sourced_id: str,
    component_id: str,
    resource_id: str,
    *,
    sort: int = 0,
    status: str = "active",
    modified: str = MODIFIED,
) -> ComponentResource:
    return ComponentResource.model_validate(
        {
            "sourcedId": sourced_id,
            "status": status,
            "dateLastModified": modified,
            "title": f"Link {sourced_id}",
            "courseComponent": {"sourcedId": component_id},
            "resource": {"sourcedId": resource_id},
            "sortOrder": sort,
        }
    )


@dataclass
class Catalog:
    """A course under construction; ``item`` adds a resource and the link placing it."""

    course: Course = field(default_factory=course)
    components: list[CourseComponent] = field(default_factory=list)
    links: list[ComponentResource] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)

    def unit(self, sourced_id: str, **kwargs: Any) -> str:
        self.components.append(component(sourced_id, **kwargs))
        return sourced_id

    def lesson(self, sourced_id: str, unit: str, **kwargs: Any) -> str:
        self.components.append(component(sourced_id, parent=unit, **kwargs))
        return sourced_id

    def item(
        self,
        component_id: str,
        resource_id: str,
        activity: str | None = "Video",
        *,
        sort: int = 0,
        link_id: str | None = None,
        link_status: str = "active",
        **kwargs: Any,
    ) -> str:
        """Add resource ``resource_id`` and link it into the component; returns the link id."""
        self.resources.append(resource(resource_id, activity, **kwargs))
        link_id = link_id or f"cr-{resource_id}"
        self.links.append(link(link_id, component_id, resource_id, sort=sort, status=link_status))
        return link_id

    def records(self) -> CourseRecords:
        return CourseRecords(
            course=self.course,
            components=list(self.components),
            component_resources=list(self.links),
            resources=list(self.resources),
        )

    def build(self) -> BuildResult:
        return build(self.records())


def build(records: CourseRecords, generation: int = 1) -> BuildResult:
    return build_bundle(records, generation=generation, built_at=BUILT_AT)


def synthetic(units: int = 10, lessons: int = 5, per_lesson: int = 10) -> CourseRecords:
    """A regular course: units x lessons x resources (mixed kinds), quizzes, tests, a challenge."""
    cat = Catalog()
    kinds = ("Video", "Video", "Exercise", "Article", "Video", "Exercise")
    for u in range(units):
        unit = cat.unit(f"u{u}", sort=u)
        for le in range(lessons):
            lesson = cat.lesson(f"u{u}-l{le}", unit, sort=le)
            for r in range(per_lesson):
                cat.item(lesson, f"u{u}-l{le}-r{r}", kinds[r % len(kinds)], sort=r, xp=r)
        assess = cat.lesson(f"u{u}-assess", unit, sort=lessons)
        cat.item(assess, f"u{u}-quiz", "Quiz", sort=0, xp=10, questionCount=5)
        cat.item(assess, f"u{u}-test", "UnitTest", sort=1, xp=20, questionCount=10)
    holder = cat.unit("challenge-holder", sort=units)
    cat.item(holder, "challenge", "CourseChallenge", xp=50, questionCount=30)
    return cat.records()
