"""What the worker does with one valid event: dedupe, find the courses, delete or mark dirty."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from core.bundle.holds import PublishHolds
from core.bundle.store import BundleStore
from core.errors import FanoutTooLarge
from core.events.model import CourseEvent
from core.events.routing import (
    direct_courses,
    is_course_delete,
    needs_resource_lookup,
    removal_evidence,
)
from core.keys import Keys
from core.logging import get_logger
from core.pipeline.debounce import Debouncer

log = get_logger(__name__)

ResourceCourses = Callable[[str], list[str]]


@dataclass(slots=True)
class Decision:
    """The effect of one event: courses deleted, rebuilds to enqueue (course, countdown s)."""

    event_id: str
    duplicate: bool = False
    deleted: list[str] = field(default_factory=list)
    rebuilds: list[tuple[str, float]] = field(default_factory=list)
    coalesced: list[str] = field(default_factory=list)


class EventIntake:
    """Applies events to Redis state; enqueuing is left to the caller (the Celery task)."""

    def __init__(
        self,
        redis_client: redis.Redis,
        keys: Keys,
        store: BundleStore,
        debouncer: Debouncer,
        *,
        resource_courses_upstream: ResourceCourses,
        dedupe_ttl_s: int = 86_400,
        fanout_max: int = 500,
        holds: PublishHolds | None = None,
    ) -> None:
        self._redis = redis_client
        self._keys = keys
        self._store = store
        self._debouncer = debouncer
        self._upstream = resource_courses_upstream
        self._ttl = dedupe_ttl_s
        self._fanout_max = fanout_max
        self._holds = holds

    def affected_courses(self, event: CourseEvent) -> list[str]:
        """The event's courses; for a resource without one, the index, else OneRoster.

        A resource found in more than ``fanout_max`` courses raises ``FanoutTooLarge`` (the
        task dead-letters the event, docs/events.md): nothing is marked dirty.
        """
        courses = direct_courses(event)
        if needs_resource_lookup(event):
            courses = self._store.course_ids_for_resource(event.subject)
            if not courses:
                courses = self._upstream(event.subject)
            if len(courses) > self._fanout_max:
                raise FanoutTooLarge(
                    f"resource is linked by {len(courses)} courses, more than "
                    f"{self._fanout_max} (CB_RESOURCE_FANOUT_MAX)",
                    event_id=event.id,
                    resource_id=event.subject,
                    courses_found=len(courses),
                    limit=self._fanout_max,
                )
        return courses

    def handle(self, event: CourseEvent) -> Decision:
        """Apply the event once; a redelivered or repeated id is acknowledged and ignored."""
        done_key = self._keys.event_done(event.id)
        decision = Decision(event.id)
        if self._redis.exists(done_key):
            decision.duplicate = True
            log.info("event_duplicate", event_id=event.id, outcome="duplicate")
            return decision
        courses = self.affected_courses(event)
        if is_course_delete(event):
            for course_id in courses:
                self._store.delete(course_id)
                self._debouncer.clear(course_id)
                decision.deleted.append(course_id)
        else:
            if courses:
                # A course created (or restored) upstream must not stay "not found" for readers.
                self._redis.delete(*(self._keys.missing(c) for c in courses))
            if self._holds is not None:
                # Before the dirty mark: the rebuild it causes must see this evidence.
                for course_id, members in removal_evidence(event, courses).items():
                    self._holds.note_removals(course_id, members)
            for course_id in courses:
                countdown = self._debouncer.note_dirty(course_id)
                if countdown is None:
                    decision.coalesced.append(course_id)
                else:
                    decision.rebuilds.append((course_id, countdown))
        # Marked only after the effects: a crash before this line means a redelivery redoes them,
        # and redoing them is harmless (dirty marks and deletes are idempotent).
        self._redis.set(done_key, b"1", ex=self._ttl)
        log.info(
            "event_applied",
            event_id=event.id,
            event_type=event.type,
            course_ids=courses,
            outcome="deleted" if decision.deleted else "dirty",
        )
        return decision
