"""Warm bundles: build every (or the named) course now, in parallel, with progress callbacks."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from core.errors import BundlesError
from core.oneroster.client import OneRosterClient
from core.pipeline.rebuild import Rebuilder, RebuildOutcome


@dataclass
class WarmReport:
    """Outcomes per course, failures with their reason, and the wall time."""

    outcomes: list[RebuildOutcome] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def active_course_ids(client: OneRosterClient) -> list[str]:
    """Every active course id upstream (the client drops soft-deleted records)."""
    return sorted(course.sourcedId for course in client.list_courses())


def warm(
    rebuilder: Rebuilder,
    course_ids: Sequence[str],
    *,
    workers: int = 4,
    on_done: Callable[[str, RebuildOutcome | None, str | None], None] | None = None,
) -> WarmReport:
    """Build each course (fenced like any rebuild); one failure never stops the others."""
    report = WarmReport()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="warm") as pool:
        futures = {pool.submit(rebuilder.rebuild, cid): cid for cid in course_ids}
        for future in as_completed(futures):
            course_id = futures[future]
            try:
                outcome = future.result()
            except BundlesError as exc:
                report.failures[course_id] = str(exc)
                if on_done:
                    on_done(course_id, None, str(exc))
                continue
            if outcome.outcome == "not_found":
                report.failures[course_id] = "not found upstream (any stored bundle was removed)"
                if on_done:
                    on_done(course_id, None, report.failures[course_id])
                continue
            report.outcomes.append(outcome)
            if on_done:
                on_done(course_id, outcome, None)
    report.outcomes.sort(key=lambda o: o.course_id)
    report.seconds = time.perf_counter() - started
    return report
