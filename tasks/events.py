"""Task: apply one mutation event (dedupe, route, delete or mark dirty, schedule rebuilds)."""

from __future__ import annotations

from typing import Any

from celery import Task

from core.errors import InvalidEvent
from core.events.broker import TASK_HANDLE_EVENT
from core.events.validate import validate_envelope
from core.logging import get_logger
from core.pipeline.failures import FailureKind, Verdict, classify, describe
from worker import metrics
from worker.celery_app import app
from worker.runtime import get_runtime

log = get_logger(__name__)


@app.task(name=TASK_HANDLE_EVENT, bind=True, max_retries=None)
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
    except Exception as exc:  # every failure, ours or not, gets a verdict
        kind = classify(exc)
        retries = self.request.retries or 0
        policy = rt.event_failures
        verdict = policy.verdict(kind, retries)
        reason = describe(exc)
        if verdict is Verdict.RETRY:
            metrics.FAILURES.labels("event", kind.value, verdict.value).inc()
            log.warning(
                "event_retry", event_id=event.id, retries=retries, kind=kind.value, reason=reason
            )
            raise self.retry(exc=exc, countdown=policy.backoff_s(retries + 1)) from exc
        why = "(not retryable)" if kind is FailureKind.PERMANENT else f"after {retries} retries"
        rt.dlq.add(
            reason=f"event failed {why}: {reason}",
            payload=event.raw,
            source="task",
            context={"event_id": event.id, "task": TASK_HANDLE_EVENT},
            attempts=retries + 1,
        )
        metrics.EVENTS.labels("failed").inc()
        metrics.DEAD_LETTERS.labels("task").inc()
        metrics.FAILURES.labels("event", kind.value, "dead_letter").inc()
        log.error(
            "event_failed",
            event_id=event.id,
            kind=kind.value,
            outcome="dead_lettered",
            reason=reason,
        )
        return {"outcome": "failed"}
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
