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
    """One valid event; ``raw`` is the original envelope, forwarded to the broker unchanged."""

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


def event_type(entity: Entity, action: Action) -> str:
    """The CloudEvents ``type`` of an entity and action, e.g. ``oneroster.course.updated``."""
    return f"{TYPE_PREFIX}{entity}.{action}"
