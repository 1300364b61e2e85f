"""Handling one event message: validate again, apply once, ask for rebuilds, or fail boundedly.

The broker may carry what no publisher checked, so every rule runs again. An invalid envelope is
dead-lettered at once; any failure while applying gets the failure policy's verdict: a retry is
a durable schedule entry (``retry``), never a broker countdown, and a spent budget is a dead
letter holding the event as it came, so a replay can apply it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from core.errors import InvalidEvent
from core.events.model import CourseEvent
from core.events.routing import direct_courses
from core.events.validate import validate_envelope
from core.logging import get_logger
from core.pipeline.failures import (
    FailureKind,
    FailurePolicy,
    FailureUnrecorded,
    Verdict,
    classify,
    describe,
    is_wrong_type,
)
from core.pipeline.intake import EventIntake
from core.pipeline.protocol import DeadLetterSink, RebuildRequests

log = get_logger(__name__)

# (envelope, attempt, countdown_s): put the event back on the durable schedule.
RetryLater = Callable[[Any, int, float], None]


class EventObserver(Protocol):
    """Metrics hooks of event handling."""

    def counted(self, outcome: str, count: int = 1) -> None:
        """Events that ended with ``outcome`` (received, invalid, duplicate, applied, failed)."""

    def failed(self, kind: FailureKind, verdict: str) -> None:
        """One failure got ``verdict``."""

    def coalesced(self, count: int) -> None:
        """Rebuild requests that joined one already pending."""


class EventHandler:
    """Applies event messages; one per process."""

    def __init__(
        self,
        intake: EventIntake,
        *,
        requests: RebuildRequests,
        retry_later: RetryLater,
        dead_letters: DeadLetterSink,
        policy: FailurePolicy,
        observer: EventObserver,
        max_bytes: int,
        task_name: str = "handle_event",
        repair: Callable[[str], list[str]] | None = None,
    ) -> None:
        self._intake = intake
        self._requests = requests
        self._retry_later = retry_later
        self._dlq = dead_letters
        self._policy = policy
        self._observer = observer
        self._max_bytes = max_bytes
        self._task_name = task_name
        self._repair = repair

    def handle(self, envelope: Any, *, attempt: object = 0) -> dict[str, Any]:
        """Handle one envelope; ``attempt`` counts the earlier failed tries of this event.

        Raises ``FailureUnrecorded`` only when a failure could be neither retried nor
        dead-lettered (Redis is failing): the message must go back to the broker.
        """
        self._observer.counted("received")
        try:
            if not _is_count(attempt):
                raise InvalidEvent(
                    "invalid message", reasons=[f"attempt must be a whole number >= 0: {attempt!r}"]
                )
            event = validate_envelope(envelope, max_bytes=self._max_bytes)
        except InvalidEvent as exc:
            return self._invalid(envelope, exc)
        except Exception as exc:  # noqa: BLE001 - a validator bug must not lose the message
            return self._invalid(envelope, InvalidEvent("invalid event", reasons=[describe(exc)]))
        try:
            decision = self._intake.handle(event)
        except Exception as exc:  # noqa: BLE001 - every failure, ours or not, gets a verdict
            tries = int(attempt)  # type: ignore[call-overload]
            try:
                if is_wrong_type(exc) and self._repair is not None:
                    self._repair_courses(event)
                return self._failed(envelope, event.id, event.raw, tries, exc)
            except Exception as unrecorded:  # noqa: BLE001 - Redis itself is failing
                log.error(
                    "event_failure_unrecorded",
                    event_id=event.id,
                    outcome="requeued",
                    reason=describe(exc),
                    error=describe(unrecorded),
                )
                raise FailureUnrecorded(describe(unrecorded)) from exc
        if decision.duplicate:
            self._observer.counted("duplicate")
            return {"outcome": "duplicate"}
        self._observer.counted("applied")
        for course_id, countdown in decision.rebuilds:
            self._requests(course_id, countdown=countdown, retries=0, trailing=countdown > 0)
        if decision.coalesced:
            self._observer.coalesced(len(decision.coalesced))
        return {
            "outcome": "applied",
            "deleted": decision.deleted,
            "rebuilds": [c for c, _ in decision.rebuilds],
            "coalesced": decision.coalesced,
        }

    def _repair_courses(self, event: CourseEvent) -> None:
        """A damaged debounce key of the event's courses is repaired before the retry."""
        if self._repair is None:
            return
        for course_id in direct_courses(event):
            try:
                repaired = self._repair(course_id)
            except Exception as exc:  # noqa: BLE001 - the retry or dead letter still follows
                log.warning("event_repair_failed", course_id=course_id, error=describe(exc))
                continue
            if repaired:
                log.warning(
                    "event_keys_repaired", event_id=event.id, course_id=course_id, keys=repaired
                )

    def _invalid(self, envelope: Any, exc: InvalidEvent) -> dict[str, Any]:
        self._dlq.add(reason=str(exc), payload=_as_payload(envelope), source="worker")
        self._observer.counted("invalid")
        log.warning("event_invalid", outcome="dead_lettered", reasons=exc.reasons)
        return {"outcome": "invalid"}

    def _failed(
        self, envelope: Any, event_id: str, raw: Any, attempt: int, exc: Exception
    ) -> dict[str, Any]:
        kind = classify(exc)
        reason = describe(exc)
        # An event's budget is final: at or past it (a lowered budget, a forged count) it is
        # dead-lettered, never retried again.
        retry = kind is not FailureKind.PERMANENT and attempt < self._policy.max_retries
        verdict = Verdict.RETRY if retry else Verdict.DEAD_LETTER
        if verdict is Verdict.RETRY:
            countdown = self._policy.backoff_s(attempt + 1)
            self._retry_later(envelope, attempt + 1, countdown)
            self._observer.failed(kind, verdict.value)
            log.warning(
                "event_retry",
                event_id=event_id,
                retries=attempt,
                countdown_s=round(countdown, 2),
                kind=kind.value,
                reason=reason,
            )
            return {"outcome": "retry", "attempt": attempt + 1}
        why = "(not retryable)" if kind is FailureKind.PERMANENT else f"after {attempt} retries"
        self._dlq.add(
            reason=f"event failed {why}: {reason}",
            payload=raw,
            source="task",
            context={"event_id": event_id, "task": self._task_name},
            attempts=attempt + 1,
        )
        self._observer.counted("failed")
        self._observer.failed(kind, "dead_letter")
        log.error(
            "event_failed",
            event_id=event_id,
            kind=kind.value,
            outcome="dead_lettered",
            reason=reason,
        )
        return {"outcome": "failed"}


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _as_payload(envelope: Any) -> Any:
    if isinstance(envelope, (dict, str, bytes)):
        return envelope
    return {"value": repr(envelope)[:65536]}
