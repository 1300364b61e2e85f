"""The validated course mutation event (events.md): what changed, never the new data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

Entity = Literal["course", "courseComponent", "componentResource", "resource"]
Action = Literal["created", "updated", "deleted"]

ENTITIES: Final[tuple[Entity, ...]] = ("course", "courseComponent", "componentResource", "resource")
ACTIONS: Final[tuple[Action, ...]] = ("created", "updated", "deleted")
TYPE_PREFIX: Final = "oneroster."


@dataclass(frozen=True, slots=True)
class CourseEvent:
    """One valid event; ``raw`` is the envelope as received, ``queued()`` what is sent on."""

    id: str
    source: str
    type: str
    entity: Entity
    action: Action
    subject: str
    time: datetime | None
    course_id: str | None
    previous_course_id: str | None
    raw: dict[str, Any]

    def queued(self) -> dict[str, Any]:
        """The trimmed envelope put on the broker: only what the worker reads, never extra data.

        It is a valid envelope again (the worker validates every message), so ``time`` keeps the
        producer's text and ``data`` only the course ids.
        """
        env: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
        }
        if self.time is not None:
            env["time"] = self.raw["time"]
        data: dict[str, str] = {}
        if self.course_id is not None:
            data["courseId"] = self.course_id
        if self.previous_course_id is not None:
            data["previousCourseId"] = self.previous_course_id
        if data:
            env["data"] = data
        return env


def event_type(entity: Entity, action: Action) -> str:
    """The CloudEvents ``type`` of an entity and action, e.g. ``oneroster.course.updated``."""
    return f"{TYPE_PREFIX}{entity}.{action}"
