"""Tasks: the debounced, fenced rebuild of one course, and the periodic reconcile."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from celery import Task

from core.errors import FlightFailed
from core.logging import get_logger
from core.pipeline.debounce import Debouncer, RebuildTicket, Wait
from core.pipeline.failures import FailureKind, Verdict, classify, describe, is_wrong_type
from core.pipeline.rebuild import RebuildOutcome
from core.pipeline.reconcile import ReconcileReport, reconcile
from worker import metrics
from worker.celery_app import REBUILDS_QUEUE, TASK_REBUILD, TASK_RECONCILE, app
from worker.runtime import get_runtime

log = get_logger(__name__)

RETRY_GRACE_S = 30.0  # a pending retry this late is taken as lost (its worker died)


def enqueue_rebuild(
    course_id: str, *, countdown: float = 0.0, retries: int = 0, trailing: bool | None = None
) -> None:
    """Queue a rebuild of the course (``countdown`` seconds from now).

    A delayed rebuild is a trailing edge unless said otherwise: it waits for the events to quiet.
    """
    rebuild_course.apply_async(
        args=[course_id],
        kwargs={"failures": retries, "trailing": countdown > 0 if trailing is None else trailing},
        countdown=countdown if countdown > 0 else None,
        queue=REBUILDS_QUEUE,
    )


@contextmanager
def _heartbeat(debouncer: Debouncer, ticket: RebuildTicket) -> Iterator[None]:
    """Keep the rebuild lease alive while we work; a dead worker's lease lapses on its own."""
    stop = threading.Event()
    interval = max(0.5, debouncer.lease_ms / 3000.0)

    def beat() -> None:
        while not stop.wait(interval):
            if not debouncer.extend(ticket):
                return

    thread = threading.Thread(target=beat, name=f"lease-{ticket.course_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=1)


@app.task(name=TASK_REBUILD, bind=True, max_retries=None)
def rebuild_course(
    self: Task, course_id: str, failures: int = 0, trailing: bool = False
) -> dict[str, Any]:
    """Rebuild one course, unless another rebuild runs, events still arrive, or it backs off.

    Whatever goes wrong takes the course's bounded failure path (core/pipeline/failures.py).
    """
    rt = get_runtime()
    try:
        return _rebuild(rt, course_id, failures, trailing)
    except Exception as exc:  # noqa: BLE001 - every failure, ours or not, gets a verdict
        try:
            return _failed(rt, course_id, exc)
        except Exception as unrecorded:  # noqa: BLE001 - Redis itself is failing
            # The course stays dirty (if Redis kept it), so reconcile requeues it later.
            metrics.FAILURES.labels("rebuild", classify(exc).value, "unrecorded").inc()
            log.error(
                "rebuild_failure_unrecorded",
                course_id=course_id,
                outcome="left_dirty",
                reason=describe(exc),
                error=describe(unrecorded),
            )
            return {"outcome": "unrecorded"}


def _rebuild(rt: Any, course_id: str, failures: int, trailing: bool) -> dict[str, Any]:
    backoff = rt.debouncer.backoff(course_id)
    if backoff is not None and backoff.parked:
        # Dead-lettered for a failure retrying cannot fix: an event or a replay unparks it.
        metrics.REBUILDS.labels("coalesced").inc()
        return {"outcome": "parked"}
    # The course's last rebuild failed and its one retry is pending: that retry covers this
    # message (an older chain, or an event that arrived before the hold), unless the retry is long
    # overdue (its worker died) and this message takes over.
    if (
        backoff is not None
        and failures != backoff.failures
        and time.time() < backoff.due + RETRY_GRACE_S
    ):
        metrics.REBUILDS.labels("coalesced").inc()
        return {"outcome": "backing_off"}
    if not rt.debouncer.is_dirty(course_id) and rt.store.generation(course_id) is not None:
        # A deferred or duplicate message whose change an earlier rebuild already covered.
        metrics.REBUILDS.labels("coalesced").inc()
        return {"outcome": "clean"}
    ticket = rt.debouncer.begin(course_id, trailing=trailing)
    if isinstance(ticket, Wait):
        enqueue_rebuild(course_id, countdown=ticket.seconds, retries=failures, trailing=True)
        log.debug("rebuild_waiting", course_id=course_id, outcome="events_arriving")
        return {"outcome": "waiting"}
    if ticket is None:
        # Another rebuild runs; begin() handed it the trailing edge (it rebuilds once more after
        # itself if events arrived), so this message is done.
        metrics.REBUILDS.labels("coalesced").inc()
        log.info("rebuild_deferred", course_id=course_id, outcome="lease_held")
        return {"outcome": "deferred"}
    metrics.REBUILDS.labels("started").inc()
    try:
        with _heartbeat(rt.debouncer, ticket):
            outcome = _rebuild_in_flight(rt, course_id)
    except Exception as exc:
        if classify(exc) is FailureKind.PERMANENT:
            # Retrying cannot help until the course changes upstream, and its next event marks
            # it dirty again: settle the marks; _failed dead-letters it.
            rt.debouncer.finish(ticket)
        else:
            rt.debouncer.release(ticket)
        raise
    if backoff is not None:
        rt.debouncer.clear_failures(course_id)
    metrics.REBUILD_DURATION.observe(outcome.duration_ms / 1000)
    if outcome.outcome == "stored":
        metrics.REBUILDS.labels("succeeded").inc()
        if ticket.dirty_since_ms:
            lag = time.time() - ticket.dirty_since_ms / 1000
            metrics.EVENT_TO_FRESH.observe(max(0.0, lag))
    elif outcome.outcome == "stale_rejected":
        metrics.REBUILDS.labels("stale_rejected").inc()
        metrics.STALE_WRITES.inc()
    else:
        metrics.REBUILDS.labels("not_found").inc()
    finish = rt.debouncer.finish(ticket)
    if finish.trailing_countdown_s is not None:
        enqueue_rebuild(course_id, countdown=finish.trailing_countdown_s, trailing=True)
    return {"outcome": outcome.outcome, "generation": outcome.generation, "clean": finish.clean}


def _rebuild_in_flight(rt: Any, course_id: str) -> RebuildOutcome:
    """Rebuild as the leader of the course's build flight, so an API miss joins us.

    A flight led by someone else (an API miss) may have read OneRoster before this event's change,
    so its outcome is not trusted: we rebuild again after it, fenced as always.
    """
    name = rt.keys.bundle_flight_name(course_id)
    try:
        flown = rt.flight.run(name, lambda _lease: rt.rebuilder.rebuild(course_id).as_dict())
    except FlightFailed:
        # We joined someone else's build and it failed; ours may still succeed.
        return cast(RebuildOutcome, rt.rebuilder.rebuild(course_id))
    if flown.led:
        return RebuildOutcome(**flown.value)
    return cast(RebuildOutcome, rt.rebuilder.rebuild(course_id))


def _dead_letter(rt: Any, course_id: str, reason: str, *, attempts: int = 1) -> None:
    rt.dlq.add(
        reason=reason,
        payload={"courseId": course_id},
        source="task",
        context={"task": TASK_REBUILD, "course_id": course_id},
        attempts=attempts,
    )
    metrics.REBUILDS.labels("failed").inc()
    metrics.DEAD_LETTERS.labels("task").inc()


def _failed(rt: Any, course_id: str, exc: Exception) -> dict[str, Any]:
    """Give the failure its verdict: retry after the course's backoff, dead-letter, or park.

    Retryable failures keep retrying at the capped backoff after their one dead letter, so the
    course heals by itself when OneRoster is back; the dead letter tells a person it has been
    failing for a while. Unexpected ones are parked once the budget is spent.
    """
    kind = classify(exc)
    reason = describe(exc)
    if is_wrong_type(exc):
        repaired = rt.debouncer.repair(course_id)
        if repaired:
            log.warning("rebuild_keys_repaired", course_id=course_id, keys=repaired)
    policy = rt.rebuild_failures
    if kind is FailureKind.PERMANENT:
        rt.debouncer.clear_failures(course_id)
        if rt.debouncer.lease_holder(course_id) is None and rt.debouncer.is_dirty(course_id):
            # Raised before the lease was taken: nothing settled the marks, so reconcile would
            # requeue the course on every pass.
            rt.debouncer.clear(course_id)
        return _give_up(rt, course_id, kind, Verdict.DEAD_LETTER, failures=1, reason=reason)
    backoff = rt.debouncer.record_failure(
        course_id,
        policy.backoff_s,
        park=lambda n: policy.verdict(kind, n) is Verdict.PARK,
    )
    verdict = policy.verdict(kind, backoff.failures)
    if verdict is Verdict.PARK:
        return _give_up(rt, course_id, kind, verdict, failures=backoff.failures, reason=reason)
    if verdict is Verdict.DEAD_LETTER_AND_RETRY:
        _dead_letter(
            rt,
            course_id,
            f"rebuild kept failing after {backoff.failures} tries: {reason}",
            attempts=backoff.failures,
        )
    metrics.REBUILDS.labels("retried").inc()
    metrics.FAILURES.labels("rebuild", kind.value, verdict.value).inc()
    countdown = max(0.0, backoff.due - time.time())
    log.warning(
        "rebuild_retry",
        course_id=course_id,
        failures=backoff.failures,
        countdown_s=round(countdown, 2),
        kind=kind.value,
        outcome=verdict.value,
        reason=reason,
    )
    enqueue_rebuild(course_id, countdown=countdown, retries=backoff.failures, trailing=False)
    return {"outcome": "retry", "failures": backoff.failures}


def _give_up(
    rt: Any, course_id: str, kind: FailureKind, verdict: Verdict, *, failures: int, reason: str
) -> dict[str, Any]:
    if verdict is Verdict.PARK:
        why = f"rebuild parked after {failures} failures (retrying cannot fix it): {reason}"
    else:
        why = f"rebuild failed (not retryable): {reason}"
    _dead_letter(rt, course_id, why, attempts=failures)
    metrics.FAILURES.labels("rebuild", kind.value, verdict.value).inc()
    log.error(
        "rebuild_failed",
        course_id=course_id,
        failures=failures,
        kind=kind.value,
        outcome="parked" if verdict is Verdict.PARK else "dead_lettered",
        reason=reason,
    )
    return {"outcome": "parked" if verdict is Verdict.PARK else "failed"}


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
        drift_batch=drift_batch,
        cursor=cursor,
    )
    if enqueue:
        for course_id in report.drifted:
            rt.debouncer.note_dirty(course_id)
        for course_id in report.requeue:
            enqueue_rebuild(course_id, trailing=False)
    return report


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
    return {"stuck": report.stuck, "drifted": report.drifted}
