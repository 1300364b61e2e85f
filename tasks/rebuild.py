"""Tasks: the rebuild of one course (decode, then core's protocol), and the periodic reconcile."""

from __future__ import annotations

import time
from typing import Any, cast

from celery import Task

from core.logging import get_logger
from core.pipeline.failures import RETRY_GRACE_S, FailureKind, describe, is_wrong_type
from core.pipeline.protocol import RebuildMessage, RebuildProtocol
from core.pipeline.rebuild import RebuildOutcome, rebuild_in_flight
from core.pipeline.reconcile import ReconcileReport, reconcile
from core.pipeline.schedule import put_rebuild, rebuild_entry_id
from worker import metrics
from worker.celery_app import REBUILDS_QUEUE, TASK_REBUILD, TASK_RECONCILE, app
from worker.runtime import get_runtime

log = get_logger(__name__)


def enqueue_rebuild(
    course_id: str, *, countdown: float = 0.0, retries: int = 0, trailing: bool | None = None
) -> None:
    """Queue a rebuild of the course now, or put it on the durable schedule for later.

    A delayed rebuild is a trailing edge unless said otherwise: it waits for the events to quiet.
    No message ever carries a countdown: the worker's schedule loop enqueues it when due.
    """
    trails = countdown > 0 if trailing is None else trailing
    if countdown > 0:
        put_rebuild(
            get_runtime().schedule,
            course_id,
            due=time.time() + countdown,
            failures=retries,
            trailing=trails,
        )
        return
    rebuild_course.apply_async(
        args=[course_id], kwargs={"failures": retries, "trailing": trails}, queue=REBUILDS_QUEUE
    )


def confirm_entry_id(course_id: str) -> str:
    """The schedule entry of a held course's confirmation re-read (one per course)."""
    return f"confirm:{course_id}"


def enqueue_confirmation(course_id: str, *, countdown: float) -> None:
    """Put the held course's confirmation re-read on the durable schedule (a later put moves it)."""
    get_runtime().schedule.put(
        confirm_entry_id(course_id),
        TASK_REBUILD,
        due=time.time() + max(0.0, countdown),
        args=[course_id],
        kwargs={"failures": 0, "trailing": False, "confirm": True},
        queue=REBUILDS_QUEUE,
    )


def sample_guarded(rt: Any) -> None:
    """Set the held / pinned gauge from Redis."""
    held, pinned = rt.holds.counts()
    metrics.COURSES_GUARDED.labels("held").set(held)
    metrics.COURSES_GUARDED.labels("pinned").set(pinned)


class _Metrics:
    """The protocol's outcomes as Prometheus metrics."""

    def __init__(self, rt: Any = None) -> None:
        self._rt = rt

    def counted(self, outcome: str) -> None:
        metrics.REBUILDS.labels(outcome).inc()
        if outcome == "failed":
            metrics.DEAD_LETTERS.labels("task").inc()

    def failed(self, kind: FailureKind, verdict: str) -> None:
        metrics.FAILURES.labels("rebuild", kind.value, verdict).inc()

    def built(self, outcome: RebuildOutcome, dirty_for_s: float | None) -> None:
        metrics.REBUILD_DURATION.observe(outcome.duration_ms / 1000)
        if outcome.outcome == "stored":
            metrics.REBUILDS.labels("succeeded").inc()
            if dirty_for_s is not None:
                metrics.EVENT_TO_FRESH.observe(max(0.0, dirty_for_s))
        elif outcome.outcome == "stale_rejected":
            metrics.REBUILDS.labels("stale_rejected").inc()
            metrics.STALE_WRITES.inc()
        elif outcome.outcome == "not_found":
            metrics.REBUILDS.labels("not_found").inc()
        else:  # held, holding, dropped, pinned
            metrics.REBUILDS.labels(outcome.outcome).inc()
        self._publish_safety(outcome)

    def _publish_safety(self, outcome: RebuildOutcome) -> None:
        changed = True
        if outcome.outcome in ("held", "pinned"):
            metrics.PUBLISH_HELD.labels(outcome.reason or "unknown").inc()
        elif outcome.reason in ("confirmed", "recovered", "gave_up"):
            metrics.PUBLISH_SETTLED.labels(outcome.reason).inc()
        else:
            changed = False
        if changed and self._rt is not None:
            sample_guarded(self._rt)


def rebuild_protocol(rt: Any) -> RebuildProtocol:
    """The protocol wired to this process's runtime, the schedule and the metrics."""
    return RebuildProtocol(
        rt.debouncer,
        rt.store,
        build=lambda course_id: rebuild_in_flight(rt.flight, rt.keys, rt.rebuilder, course_id),
        requests=enqueue_rebuild,
        dead_letters=rt.dlq,
        policy=rt.rebuild_failures,
        observer=_Metrics(rt),
        task_name=TASK_REBUILD,
        confirmations=enqueue_confirmation,
        is_held=rt.holds.is_held,
    )


@app.task(name=TASK_REBUILD, bind=True, max_retries=None)
def rebuild_course(
    self: Task, course_id: str, failures: int = 0, trailing: bool = False, *, confirm: bool = False
) -> dict[str, Any]:
    """Rebuild one course, unless another rebuild runs, events still arrive, or it backs off.

    ``confirm``: the confirmation re-read of a held build (runs though nothing is dirty).
    """
    message = RebuildMessage(
        str(course_id), failures=int(failures), trailing=bool(trailing), confirm=bool(confirm)
    )
    return rebuild_protocol(get_runtime()).handle(message)


def reconcile_pass(
    rt: Any, *, drift_batch: int, cursor: int = 0, enqueue: bool = True
) -> ReconcileReport:
    """One reconcile pass: find stuck and drifted courses, mark drifted ones dirty, queue both."""
    s = rt.settings
    report = reconcile(
        rt.debouncer,
        rt.store,
        rt.changed_since,
        stuck_after_s=s.debounce_max_wait_s + s.rebuild_lease_ms / 1000,
        retry_grace_s=RETRY_GRACE_S,
        scheduled=lambda ids: rt.schedule.due_at_many([rebuild_entry_id(c) for c in ids]),
        drift_batch=drift_batch,
        cursor=cursor,
    )
    if enqueue:
        for course_id in report.requeue:
            try:
                if course_id in report.drifted:
                    rt.debouncer.note_dirty(course_id)
                enqueue_rebuild(course_id, trailing=False)
            except Exception as exc:  # noqa: BLE001 - one course must not stop the pass
                if is_wrong_type(exc):
                    repaired = rt.debouncer.repair(course_id)
                    log.warning("reconcile_keys_repaired", course_id=course_id, keys=repaired)
                log.warning("reconcile_requeue_failed", course_id=course_id, error=describe(exc))
        try:
            requeue_lost_confirmations(rt)
        except Exception as exc:  # noqa: BLE001 - held re-reads must not stop the pass either
            log.warning("publish_confirmations_not_requeued", error=describe(exc))
    return report


def requeue_lost_confirmations(rt: Any, *, now: float | None = None) -> list[str]:
    """Held courses whose re-read is overdue with no schedule entry (lost, or held by the API)."""
    overdue = rt.holds.overdue(now=time.time() if now is None else now, grace_s=RETRY_GRACE_S)
    lost = [c for c in overdue if rt.schedule.due_at(confirm_entry_id(c)) is None]
    for course_id in lost:
        enqueue_confirmation(course_id, countdown=0.0)
    if lost:
        log.warning("publish_confirmations_requeued", course_ids=lost, outcome="requeued")
    return lost


@app.task(name=TASK_RECONCILE)
def reconcile_courses() -> dict[str, Any]:
    """Requeue courses left dirty or changed upstream without an event."""
    rt = get_runtime()
    cursor_key = rt.keys.reconcile_cursor()
    report = reconcile_pass(
        rt,
        drift_batch=rt.settings.reconcile_drift_batch,
        cursor=int(cast(Any, rt.redis.get(cursor_key)) or 0),
    )
    rt.redis.set(cursor_key, report.next_cursor)
    metrics.RECONCILE_REQUEUED.labels("stuck").inc(len(report.stuck))
    metrics.RECONCILE_REQUEUED.labels("drifted").inc(len(report.drifted))
    metrics.DLQ_SIZE.set(rt.dlq.count())
    sample_guarded(rt)
    return {"stuck": report.stuck, "drifted": report.drifted}
