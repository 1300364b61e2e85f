"""Warm bundles: build every (or the named) course now, in parallel, with progress callbacks.

Warm is background work for the fleet's upstream budget: it takes what readers and events leave.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from core.budget.classes import request_class
from core.errors import BundlesError, OneRosterThrottled
from core.oneroster.client import OneRosterClient
from core.pipeline.rebuild import Rebuilder, RebuildOutcome

TICK_S = 0.25  # how often ``on_tick`` runs while courses are building
THROTTLED_RETRIES = 20  # a course throttled this many times in a row is reported failed
MAX_BACKOFF_S = 5.0


@dataclass
class WarmReport:
    """Outcomes per course, failures with their reason, and the wall time."""

    outcomes: list[RebuildOutcome] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def active_course_ids(client: OneRosterClient) -> list[str]:
    """Every active course id upstream (the client drops soft-deleted records)."""
    with request_class("background"):
        return sorted(course.sourcedId for course in client.list_courses())


def _build(rebuilder: Rebuilder, course_id: str, sleep: Callable[[float], None]) -> RebuildOutcome:
    """One course as background work; a throttle (budget or upstream) waits and tries again."""
    with request_class("background"):
        for _ in range(THROTTLED_RETRIES - 1):
            try:
                return rebuilder.rebuild(course_id)
            except OneRosterThrottled as exc:
                sleep(min(MAX_BACKOFF_S, max(0.05, exc.retry_after_s)))
        return rebuilder.rebuild(course_id)


def warm(
    rebuilder: Rebuilder,
    course_ids: Sequence[str],
    *,
    workers: int = 4,
    on_done: Callable[[str, RebuildOutcome | None, str | None], None] | None = None,
    on_tick: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> WarmReport:
    """Build each course (fenced like any rebuild); one failure never stops the others.

    ``on_tick`` runs about every ``TICK_S`` seconds (the progress bar shows budget waits).
    """
    report = WarmReport()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="warm") as pool:
        futures: dict[Future[RebuildOutcome], str] = {
            pool.submit(_build, rebuilder, cid, sleep): cid for cid in course_ids
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=TICK_S, return_when=FIRST_COMPLETED)
            if on_tick:
                on_tick()
            for future in done:
                _collect(report, futures[future], future, on_done)
    report.outcomes.sort(key=lambda o: o.course_id)
    report.seconds = time.perf_counter() - started
    return report


def _collect(
    report: WarmReport,
    course_id: str,
    future: Future[RebuildOutcome],
    on_done: Callable[[str, RebuildOutcome | None, str | None], None] | None,
) -> None:
    try:
        outcome = future.result()
    except BundlesError as exc:
        report.failures[course_id] = str(exc)
        if on_done:
            on_done(course_id, None, str(exc))
        return
    if outcome.outcome == "not_found":
        report.failures[course_id] = "not found upstream (any stored bundle was removed)"
        if on_done:
            on_done(course_id, None, report.failures[course_id])
        return
    report.outcomes.append(outcome)
    if on_done:
        on_done(course_id, outcome, None)
