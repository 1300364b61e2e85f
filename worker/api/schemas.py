"""The API's documented shapes: parameters' patterns and the bodies of every answer.

Answers are bytes built elsewhere (stored bundles, cached slices); these models exist so the
OpenAPI document describes exactly what is sent. Optional fields are left out, never null.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from worker.api.problems import PROBLEM_MEDIA_TYPE

# Ids end up in Redis keys and OneRoster filters: the allow-list the filters use, minus dot-only
# ids ("." and ".." are path segments); the length (1-200) is bounded by ID_MAX_LENGTH.
ID_PATTERN = r"^[A-Za-z0-9:._-]*[A-Za-z0-9:_-][A-Za-z0-9:._-]*$"
ID_MAX_LENGTH = 200
# Attempt identities also refuse ":", the separator of the attempt keys (docs/attempts.md).
ATTEMPT_ID_PATTERN = r"^[A-Za-z0-9._-]*[A-Za-z0-9_-][A-Za-z0-9._-]*$"
# One URL path segment (core.bundle.paths): no separators, %, backslash or whitespace.
SLUG_PATTERN = r"^[^/?#%\\\s]{1,200}$"

Kind = Literal["video", "article", "exercise", "quiz", "unit-test", "course-challenge"]
AssessmentKindParam = Literal["quiz", "unit-test", "course-challenge"]

CourseId = Annotated[
    str,
    Path(
        alias="courseId",
        pattern=ID_PATTERN,
        max_length=ID_MAX_LENGTH,
        description="The course's sourcedId",
        examples=["course-42"],
    ),
]
CourseSlug = Annotated[
    str,
    Path(
        alias="courseSlug",
        pattern=SLUG_PATTERN,
        description="The course's slug",
        examples=["cc-sixth-grade-math"],
    ),
]
UnitSlug = Annotated[
    str,
    Path(
        alias="unitSlug", pattern=SLUG_PATTERN, description="The unit's slug", examples=["ratios"]
    ),
]
LessonSlug = Annotated[
    str,
    Path(
        alias="lessonSlug",
        pattern=SLUG_PATTERN,
        description="The lesson's slug",
        examples=["intro-to-ratios"],
    ),
]
ResourceId = Annotated[
    str,
    Path(
        alias="resourceId",
        pattern=ID_PATTERN,
        max_length=ID_MAX_LENGTH,
        description="The resource's sourcedId",
        examples=["r1"],
    ),
]
Subject = Annotated[
    str,
    Path(
        alias="subject", pattern=SLUG_PATTERN, description="The subject's slug", examples=["math"]
    ),
]
UserId = Annotated[
    str,
    Path(
        alias="userId",
        pattern=ATTEMPT_ID_PATTERN,
        max_length=ID_MAX_LENGTH,
        description="The learner's sourcedId (no ':')",
        examples=["student-1"],
    ),
]
AttemptResourceId = Annotated[
    str,
    Path(
        alias="resourceId",
        pattern=ATTEMPT_ID_PATTERN,
        max_length=ID_MAX_LENGTH,
        description="The resource's sourcedId (no ':')",
        examples=["r1"],
    ),
]

SubjectQuery = Annotated[
    str,
    Query(
        pattern=SLUG_PATTERN, max_length=200, description="The subject's slug", examples=["math"]
    ),
]
CourseQuery = Annotated[
    str,
    Query(
        alias="course",
        pattern=SLUG_PATTERN,
        max_length=200,
        description="Course slug",
        examples=["cc-sixth-grade-math"],
    ),
]
KindQuery = Annotated[
    AssessmentKindParam, Query(description="The assessment's kind", examples=["quiz"])
]
SlugQuery = Annotated[
    str,
    Query(
        pattern=SLUG_PATTERN,
        max_length=200,
        description="The assessment's slug",
        examples=["ratios-quiz"],
    ),
]
UnitQuery = Annotated[
    str | None,
    Query(
        pattern=SLUG_PATTERN,
        max_length=200,
        description="Unit slug (required for quiz and unit-test, omitted for a course challenge)",
        examples=["ratios"],
    ),
]


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ResourceOut(_Out):
    """A resource as placed in a lesson (or the course challenge)."""

    componentResourceId: str
    resourceId: str
    slug: str
    title: str
    kind: Kind
    sortOrder: int
    xp: int
    path: str
    youtubeId: str | SkipJsonSchema[None] = None
    questionCount: int | SkipJsonSchema[None] = None
    url: str | SkipJsonSchema[None] = None


class LessonOut(_Out):
    """A lesson and its ordered resources."""

    sourcedId: str
    slug: str
    title: str
    sortOrder: int
    resources: list[ResourceOut]


class UnitOut(_Out):
    """A unit exactly as in the bundle, with its lessons and their resources."""

    sourcedId: str
    slug: str
    title: str
    sortOrder: int
    lessons: list[LessonOut]


class CourseOut(_Out):
    """The course's identity."""

    sourcedId: str
    slug: str
    title: str
    subject: str


class TotalsOut(_Out):
    """Counts over the whole bundle."""

    units: int
    lessons: int
    resources: int
    xp: int


class BundleOut(_Out):
    """The whole course bundle."""

    schemaVersion: int
    courseId: str
    generation: int
    builtAt: str
    course: CourseOut
    units: list[UnitOut]
    courseChallenge: ResourceOut | None
    totals: TotalsOut
    skipped: int


class LessonSliceOut(LessonOut):
    """The lesson as in the bundle, plus the slug of its unit."""

    unitSlug: str


class ResourceSliceOut(ResourceOut):
    """The resource as in the bundle, plus where it sits (both null for the course challenge)."""

    unitSlug: str | None
    lessonSlug: str | None


class CourseSummaryOut(_Out):
    """One built course of a subject."""

    courseId: str
    slug: str
    title: str
    generation: int
    totals: TotalsOut


class SubjectCoursesOut(_Out):
    """The built courses of a subject, ordered by slug."""

    subject: str
    courses: list[CourseSummaryOut]


class RedirectOut(_Out):
    """The canonical path of an assessment page."""

    path: str


class AttemptOut(_Out):
    """The active attempt."""

    attemptNumber: int = Field(ge=1)
    source: Literal["pointer", "recovered"]


class ResolvedAttemptOut(_Out):
    """The active attempt, or the one just created."""

    attemptNumber: int = Field(ge=1)
    source: Literal["pointer", "recovered", "derived"]
    created: bool


class ClearedAttemptOut(_Out):
    """The attempt whose state and pointer were cleared."""

    clearedAttempt: int = Field(ge=1)


class EventsAcceptedOut(_Out):
    """How many events were new and how many were already seen."""

    accepted: int = Field(ge=0)
    duplicates: int = Field(ge=0)


class HealthOut(_Out):
    """The process is up."""

    status: Literal["ok"]


class ReadyOut(_Out):
    """Every dependency answered."""

    status: Literal["ready"]
    checks: dict[str, str]


# --- response declarations -----------------------------------------------------------------------
def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    declared: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if headers:
        declared["headers"] = headers
    return declared


Responses = dict[int | str, dict[str, Any]]
_STRING = {"schema": {"type": "string"}}
BUNDLE_HEADERS: dict[str, Any] = {
    "ETag": {"description": "Strong validator of this answer", **_STRING},
    "X-Bundle-Generation": {
        "description": "The bundle's generation (grows with every rebuild of the course)",
        "schema": {"type": "integer"},
    },
    "X-Bundle-Built-At": {"description": "When the bundle was built (RFC 3339)", **_STRING},
    "X-Bundle-Stale": {
        "description": "`true` when an older bundle is served (OneRoster unreachable or the "
        "bundle past its freshness; a refresh is under way)",
        **_STRING,
    },
    "Content-Encoding": {"description": "gzip or zstd when negotiated", **_STRING},
    "Vary": {"description": "Accept-Encoding", **_STRING},
}
AUTH: Responses = {
    401: _problem(
        "No bearer token, or an unknown one",
        {"WWW-Authenticate": {"description": "Bearer challenge", **_STRING}},
    ),
    403: _problem("The token lacks the scope this operation needs"),
}
INVALID: Responses = {422: _problem("A parameter breaks its pattern or is missing")}
UNAVAILABLE: Responses = {
    503: _problem(
        "Redis, OneRoster or the broker cannot answer now; retry",
        {"Retry-After": {"description": "Seconds to wait", **_STRING}},
    )
}
NOT_MODIFIED: Responses = {
    304: {"description": "The ETag in If-None-Match is current; no body", "headers": BUNDLE_HEADERS}
}


def responses(*extra: Responses) -> Responses:
    """Auth, validation and availability answers plus ``extra``."""
    merged: Responses = {**AUTH, **INVALID, **UNAVAILABLE}
    for more in extra:
        merged.update(more)
    return merged


def problem(status: int, description: str) -> Responses:
    """One documented problem answer."""
    return {status: _problem(description)}


def ok_headers() -> Responses:
    """The bundle headers on the 200 answer."""
    return {200: {"description": "OK", "headers": BUNDLE_HEADERS}}
