"""The bundle document of api.md as plain typed dicts (serialised straight by orjson)."""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

SCHEMA_VERSION = 1

Kind = Literal["video", "article", "exercise", "quiz", "unit-test", "course-challenge"]
KINDS: tuple[Kind, ...] = ("video", "article", "exercise", "quiz", "unit-test", "course-challenge")
ASSESSMENT_KINDS: frozenset[str] = frozenset({"quiz", "unit-test", "course-challenge"})

# Path segment per kind in canonical paths (api.md); a course challenge has its own shape.
PATH_SEGMENT: dict[str, str] = {
    "video": "v",
    "article": "a",
    "exercise": "e",
    "quiz": "quiz",
    "unit-test": "test",
}


class ResourceEntry(TypedDict):
    """A resource as placed in a lesson (or as the course challenge)."""

    componentResourceId: str
    resourceId: str
    slug: str
    title: str
    kind: Kind
    sortOrder: int
    xp: int
    path: str
    youtubeId: NotRequired[str]
    questionCount: NotRequired[int]
    url: NotRequired[str]


class LessonEntry(TypedDict):
    """A lesson and its ordered resources."""

    sourcedId: str
    slug: str
    title: str
    sortOrder: int
    resources: list[ResourceEntry]


class UnitEntry(TypedDict):
    """A unit and its ordered lessons."""

    sourcedId: str
    slug: str
    title: str
    sortOrder: int
    lessons: list[LessonEntry]


class CourseEntry(TypedDict):
    """The course's identity."""

    sourcedId: str
    slug: str
    title: str
    subject: str


class Totals(TypedDict):
    """Counts and xp over the whole bundle (the course challenge counts in resources and xp)."""

    units: int
    lessons: int
    resources: int
    xp: int


class BundleDoc(TypedDict):
    """The whole course bundle, exactly as ``GET /v1/courses/{id}/bundle`` returns it."""

    schemaVersion: int
    courseId: str
    generation: int
    builtAt: str
    course: CourseEntry
    units: list[UnitEntry]
    courseChallenge: ResourceEntry | None
    totals: Totals
    skipped: int
