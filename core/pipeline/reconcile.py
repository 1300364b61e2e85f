"""Periodic safety net: requeue courses left dirty (lost task, dead worker), catch missed events."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from core.bundle.store import BundleStore
from core.errors import OneRosterError
from core.logging import get_logger
from core.pipeline.debounce import CourseState, Debouncer
from core.pipeline.failures import RETRY_GRACE_S

log = get_logger(__name__)

CHECK_BATCH = 500  # dirty courses checked per round trip

ChangedSince = Callable[[str, dt.datetime], bool]


@dataclass(slots=True)
class ReconcileReport:
    """Courses requeued because they stayed dirty, and because OneRoster changed unseen."""

    stuck: list[str] = field(default_factory=list)
    drifted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    parked: list[str] = field(default_factory=list)
    probed: list[str] = field(default_factory=list)
    next_cursor: int = 0

    @property
    def requeue(self) -> list[str]:
        """Every course to rebuild, once each."""
        return list(dict.fromkeys([*self.stuck, *self.drifted]))


def reconcile(
    debouncer: Debouncer,
    store: BundleStore,
    changed_since: ChangedSince | None,
    *,
    stuck_after_s: float,
    drift_batch: int = 50,
    cursor: int = 0,
    retry_grace_s: float = RETRY_GRACE_S,
    scheduled: Callable[[list[str]], list[float | None]] | None = None,
    now: float | None = None,
) -> ReconcileReport:
    """Find courses to rebuild; the caller enqueues ``report.requeue``.

    Drift probes cost upstream requests, so each pass probes at most ``drift_batch`` courses,
    resuming at ``cursor``; ``report.next_cursor`` is where the next pass starts. A course is left
    alone while its retry is pending (until ``retry_grace_s`` past its due time), while its delayed
    rebuild waits on the schedule (``scheduled`` gives due times), or while it is parked; a
    course dirty with neither (the schedule was lost, a message dropped) is requeued.
    """
    report = ReconcileReport()
    moment = time.time() if now is None else now
    dirty = debouncer.dirty_courses(older_than_s=stuck_after_s, now=moment)
    for start in range(0, len(dirty), CHECK_BATCH):
        batch = dirty[start : start + CHECK_BATCH]
        try:
            states = debouncer.states(batch)
            dues = scheduled(batch) if scheduled is not None else [None] * len(batch)
        except redis.RedisError as exc:
            report.errors.extend(batch)
            log.warning("reconcile_batch_failed", courses=len(batch), error=str(exc))
            continue
        for course_id, state, due in zip(batch, states, dues, strict=True):
            if isinstance(state, Exception):
                # One course's damaged keys must not stop the pass for every other course.
                report.errors.append(course_id)
                log.warning("reconcile_course_failed", course_id=course_id, error=str(state))
                continue
            _check_stuck(course_id, state, due, report, moment, retry_grace_s)
    if changed_since is not None:
        _probe_drift(
            debouncer, store, changed_since, report, drift_batch=drift_batch, cursor=cursor
        )
    log.info(
        "reconcile_done",
        stuck=len(report.stuck),
        drifted=len(report.drifted),
        errors=len(report.errors),
        parked=len(report.parked),
        outcome="requeue" if report.requeue else "clean",
    )
    return report


def _check_stuck(  # noqa: PLR0917 - a private step of reconcile
    course_id: str,
    state: CourseState,
    due: float | None,
    report: ReconcileReport,
    moment: float,
    retry_grace_s: float,
) -> None:
    # A live rebuild holds the lease and will trail itself; an orphaned lease has lapsed.
    if state.lease_holder is not None:
        return
    backoff = state.backoff
    if backoff is not None and backoff.parked:
        # Dead-lettered: an event or a replay brings it back, not every pass.
        report.parked.append(course_id)
        return
    if backoff is not None and moment < backoff.due + retry_grace_s:
        return  # its retry is pending; requeueing would only be coalesced
    if due is not None and moment < due + retry_grace_s:
        return  # a delayed rebuild waits on the durable schedule
    report.stuck.append(course_id)


def _probe_drift(
    debouncer: Debouncer,
    store: BundleStore,
    changed_since: ChangedSince,
    report: ReconcileReport,
    *,
    drift_batch: int,
    cursor: int,
) -> None:
    everyone = sorted(store.all_course_ids())
    start = cursor % len(everyone) if everyone else 0
    course_ids = (everyone[start:] + everyone[:start])[: max(0, drift_batch)]
    report.probed = course_ids
    report.next_cursor = (start + len(course_ids)) % len(everyone) if everyone else 0
    for meta in store.metas(course_ids):
        since_text = meta.source_modified or meta.built_at
        since = dt.datetime.fromisoformat(since_text.replace("Z", "+00:00"))
        try:
            backoff = debouncer.backoff(meta.course_id)
            if backoff is not None and backoff.parked:
                # Its bundle is stale because it is parked: only a change after the parking is
                # news, else every pass would unpark it into another round of failures.
                since = max(since, dt.datetime.fromtimestamp(backoff.due, dt.UTC))
            if changed_since(meta.course_id, since):
                report.drifted.append(meta.course_id)
        except (OneRosterError, redis.RedisError) as exc:
            report.errors.append(meta.course_id)
            log.warning("reconcile_probe_failed", course_id=meta.course_id, error=str(exc))
