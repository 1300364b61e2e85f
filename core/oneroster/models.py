"""Typed OneRoster records that accept both dialects (official 1.2 and legacy/Timeback servers).

Unknown fields are ignored; references keep only ``sourcedId``; ``inactive`` counts as deleted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Status = Literal["active", "tobedeleted", "inactive"]


class Ref(BaseModel):
    """A reference to another record; official servers add ``href`` and ``type``."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    sourcedId: str


class Record(BaseModel):
    """Fields every OneRoster record has."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    sourcedId: str
    status: Status = "active"
    dateLastModified: dt.datetime | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _lower_status(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_object(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else None

    @property
    def is_active(self) -> bool:
        """True unless soft-deleted (``tobedeleted``) or ``inactive``."""
        return self.status == "active"

    def meta(self, key: str) -> Any:
        """A metadata value, or None."""
        return (self.metadata or {}).get(key)


class Course(Record):
    """A course (``/courses``)."""

    title: str = ""
    courseCode: str | None = None
    subjects: list[str] | None = None

    @property
    def slug(self) -> Any:
        """``metadata.khanSlug``."""
        return self.meta("khanSlug")

    @property
    def subject(self) -> Any:
        """``metadata.subject`` (the subject slug used in paths).

        ``subjects[]`` holds display names ("Math"), so it is not a fallback: a course without
        ``metadata.subject`` cannot have canonical paths and the builder refuses it.
        """
        return self.meta("subject")


class CourseComponent(Record):
    """A unit (``parent`` null) or a lesson (``parent`` is its unit)."""

    title: str = ""
    course: Ref
    parent: Ref | None = None
    sortOrder: int = 0

    @model_validator(mode="before")
    @classmethod
    def _legacy_parent(cls, data: Any) -> Any:
        # Legacy servers name the parent ``courseComponent``; ``parent`` wins when both exist.
        if isinstance(data, dict) and data.get("parent") is None and data.get("courseComponent"):
            data = {**data, "parent": data["courseComponent"]}
        return data

    @property
    def slug(self) -> Any:
        """``metadata.khanSlug``."""
        return self.meta("khanSlug")


class ComponentResource(Record):
    """Links a component to a resource, with a ``sortOrder``."""

    title: str = ""
    courseComponent: Ref
    resource: Ref
    sortOrder: int = 0


class Resource(Record):
    """A video, article, exercise, quiz, unit test or course challenge."""

    title: str = ""
    vendorResourceId: str | None = None


class AssessmentResult(Record):
    """A gradebook result; ``metadata.attempt`` numbers the attempt when present."""

    assessmentLineItem: Ref
    student: Ref
    score: float | None = None
    scoreDate: dt.datetime | None = None
    scoreStatus: str | None = None

    @field_validator("scoreDate", mode="before")
    @classmethod
    def _date_or_datetime(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) == 10:
            return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
        return value

    @property
    def attempt(self) -> int | None:
        """``metadata.attempt`` as an integer, or None when absent or not a number."""
        value = self.meta("attempt")
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
        return None


class TokenResponse(BaseModel):
    """OAuth 2.0 client-credentials answer; ``expires_in`` defaults to 3600 s."""

    model_config = ConfigDict(extra="ignore")
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the token type, not a secret
    expires_in: float = Field(default=3600.0)


@dataclass(slots=True)
class CourseRecords:
    """Everything one bundle needs, fetched with course-scoped queries only."""

    course: Course
    components: list[CourseComponent] = field(default_factory=list)
    component_resources: list[ComponentResource] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)
    upstream_requests: int = 0
