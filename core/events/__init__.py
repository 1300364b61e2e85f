"""Course mutation events (events.md): model, validation, routing, publishing, dead letters.

The package root re-exports only the pure parts; import ``publisher``, ``broker`` (Celery) and
``dlq`` from their modules so a validation-only import does not pull in the broker client.
"""

from core.events.model import Action, CourseEvent, Entity
from core.events.routing import direct_courses, is_course_delete, needs_resource_lookup
from core.events.validate import (
    BatchProblem,
    InvalidBatch,
    UnsupportedContentType,
    parse_batch,
    parse_event_bytes,
    validate_event,
)

__all__ = [
    "Action",
    "BatchProblem",
    "CourseEvent",
    "Entity",
    "InvalidBatch",
    "UnsupportedContentType",
    "direct_courses",
    "is_course_delete",
    "needs_resource_lookup",
    "parse_batch",
    "parse_event_bytes",
    "validate_event",
]
