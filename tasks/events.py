"""Task: apply one mutation event (decode, then core's handler: dedupe, route, schedule)."""

from __future__ import annotations

import time
from typing import Any

from celery import Task
from celery.exceptions import Reject

from core.events.broker import EVENTS_QUEUE, TASK_HANDLE_EVENT
from core.logging import get_logger
from core.pipeline.failures import FailureKind, FailureUnrecorded
from core.pipeline.handling import EventHandler
from worker import metrics
from worker.celery_app import app
from worker.runtime import get_runtime

log = get_logger(__name__)

UNRECORDED_PAUSE_S = 1.0


class _Metrics:
    """The handler's outcomes as Prometheus metrics."""

    def counted(self, outcome: str, count: int = 1) -> None:
        metrics.EVENTS.labels(outcome).inc(count)
        if outcome == "invalid":
            metrics.DEAD_LETTERS.labels("worker").inc()
        elif outcome == "failed":
            metrics.DEAD_LETTERS.labels("task").inc()

    def failed(self, kind: FailureKind, verdict: str) -> None:
        metrics.FAILURES.labels("event", kind.value, verdict).inc()

    def coalesced(self, count: int) -> None:
        metrics.REBUILDS.labels("coalesced").inc(count)


def event_handler(rt: Any) -> EventHandler:
    """The handler wired to this process's runtime, the schedule and the metrics."""
    from tasks.rebuild import enqueue_rebuild  # noqa: PLC0415 - tasks import each other

    def retry_later(envelope: Any, attempt: int, countdown: float) -> None:
        event_id = envelope.get("id") if isinstance(envelope, dict) else None
        rt.schedule.put(
            f"event:{event_id}",
            TASK_HANDLE_EVENT,
            due=time.time() + countdown,
            args=[envelope],
            kwargs={"attempt": attempt},
            queue=EVENTS_QUEUE,
        )

    return EventHandler(
        rt.intake,
        requests=enqueue_rebuild,
        retry_later=retry_later,
        dead_letters=rt.dlq,
        policy=rt.event_failures,
        observer=_Metrics(),
        max_bytes=rt.settings.event_max_bytes,
        task_name=TASK_HANDLE_EVENT,
        repair=rt.debouncer.repair,
    )


@app.task(name=TASK_HANDLE_EVENT, bind=True, max_retries=None)
def handle_event(self: Task, envelope: Any, *, attempt: Any = 0) -> dict[str, Any]:
    """Validate again (the broker may carry anything), apply, ask for the rebuilds."""
    # Only the schedule sets ``attempt``; a message from before it counted in Celery's header.
    legacy = self.request.retries
    if isinstance(legacy, int) and legacy > 0 and attempt == 0:
        attempt = legacy
    try:
        return event_handler(get_runtime()).handle(envelope, attempt=attempt)
    except FailureUnrecorded as exc:
        # Neither a retry nor a dead letter could be written: give the message back to the
        # broker (after a pause, so a Redis outage is not a hot loop) rather than lose it.
        time.sleep(UNRECORDED_PAUSE_S)
        raise Reject(str(exc), requeue=True) from exc
