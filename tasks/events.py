"""Task: apply one mutation event (dedupe, route, delete or mark dirty, schedule rebuilds)."""

from __future__ import annotations

import random
from typing import Any

from celery import Task

from core.errors import BundlesError, InvalidEvent
from core.events.broker import TASK_HANDLE_EVENT
from core.events.validate import validate_envelope
from core.logging import get_logger
from worker import metrics
from worker.celery_app import app
from worker.runtime import get_runtime

log = get_logger(__name__)

MAX_RETRIES = 6


@app.task(name=TASK_HANDLE_EVENT, bind=True, max_retries=MAX_RETRIES)
def handle_event(self: Task, envelope: Any) -> dict[str, Any]:
    """Validate again (the broker may carry anything), apply, enqueue the rebuilds."""
    from tasks.rebuild import enqueue_rebuild  # noqa: PLC0415 - tasks import each other

    rt = get_runtime()
    metrics.EVENTS.labels("received").inc()
    try:
        # The broker may carry what no publisher checked: every rule again, size included.
        event = validate_envelope(envelope, max_bytes=rt.settings.event_max_bytes)
    except InvalidEvent as exc:
        rt.dlq.add(reason=str(exc), payload=_as_payload(envelope), source="worker")
        metrics.EVENTS.labels("invalid").inc()
        metrics.DEAD_LETTERS.labels("worker").inc()
        log.warning("event_invalid", outcome="dead_lettered", reasons=exc.reasons)
        return {"outcome": "invalid"}
    try:
        decision = rt.intake.handle(event)
    except BundlesError as exc:
        retries = self.request.retries or 0
        if not exc.retryable or retries >= MAX_RETRIES:
            why = f"after {retries} retries" if exc.retryable else "(not retryable)"
            rt.dlq.add(
                reason=f"event failed {why}: {exc}",
                payload=event.raw,
                source="task",
                context={"event_id": event.id, "task": TASK_HANDLE_EVENT},
            )
            metrics.EVENTS.labels("failed").inc()
            metrics.DEAD_LETTERS.labels("task").inc()
            log.error("event_failed", event_id=event.id, outcome="dead_lettered", error=str(exc))
            return {"outcome": "failed"}
        countdown = min(60.0, 0.5 * 2**retries) * random.uniform(0.5, 1.0)
        log.warning("event_retry", event_id=event.id, retries=retries, error=str(exc))
        raise self.retry(exc=exc, countdown=countdown) from exc
    if decision.duplicate:
        metrics.EVENTS.labels("duplicate").inc()
        return {"outcome": "duplicate"}
    metrics.EVENTS.labels("applied").inc()
    for course_id, countdown in decision.rebuilds:
        enqueue_rebuild(course_id, countdown=countdown)
    if decision.coalesced:
        metrics.REBUILDS.labels("coalesced").inc(len(decision.coalesced))
    return {
        "outcome": "applied",
        "deleted": decision.deleted,
        "rebuilds": [c for c, _ in decision.rebuilds],
        "coalesced": decision.coalesced,
    }


def _as_payload(envelope: Any) -> Any:
    if isinstance(envelope, (dict, str, bytes)):
        return envelope
    return {"value": repr(envelope)[:65536]}
