"""One fenced rebuild of one course: generation first, then OneRoster, then build, encode, swap."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from core.bundle.builder import build_bundle
from core.bundle.codec import encode_bundle
from core.bundle.store import BundleStore
from core.errors import CourseNotFound
from core.logging import get_logger
from core.oneroster.models import CourseRecords

log = get_logger(__name__)

Outcome = Literal["stored", "stale_rejected", "not_found"]
FetchCourse = Callable[[str], CourseRecords]


@dataclass(frozen=True, slots=True)
class RebuildOutcome:
    """What one rebuild did, with the numbers the CLI and metrics report."""

    course_id: str
    generation: int
    outcome: Outcome
    duration_ms: float
    build_ms: float = 0.0
    upstream_requests: int = 0
    raw_size: int = 0
    gzip_size: int = 0
    zstd_size: int = 0
    skipped: int = 0
    units: int = 0
    lessons: int = 0
    resources: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (a cross-process flight carries it to the waiters)."""
        return asdict(self)


class Rebuilder:
    """Builds and stores bundles; the store's fencing makes a stale rebuild harmless."""

    def __init__(
        self,
        store: BundleStore,
        fetch: FetchCourse,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._store = store
        self._fetch = fetch
        self._clock = clock

    def rebuild(self, course_id: str) -> RebuildOutcome:
        """Rebuild now. ``OneRosterError`` propagates (callers retry); a gone course is deleted."""
        started = time.perf_counter()
        # The fencing token is taken before reading upstream: a later read carries a higher one.
        generation = self._store.next_generation(course_id)
        try:
            records = self._fetch(course_id)
        except CourseNotFound:
            if self._store.is_known(course_id):
                self._store.delete(course_id)
            else:
                # Never built: a tombstone would only let unknown-id probes grow Redis.
                self._store.discard_fence(course_id)
            duration = (time.perf_counter() - started) * 1000
            log.info(
                "rebuild_course_gone",
                course_id=course_id,
                generation=generation,
                outcome="not_found",
                duration_ms=round(duration, 1),
            )
            return RebuildOutcome(course_id, generation, "not_found", duration)
        cpu = time.process_time()
        result = build_bundle(records, generation=generation, built_at=self._clock())
        encoded = encode_bundle(result.doc)
        build_ms = (time.process_time() - cpu) * 1000
        written = self._store.write(
            course_id,
            result.doc,
            encoded,
            upstream_requests=records.upstream_requests,
            source_modified=result.source_modified,
            resource_ids=result.resource_ids,
        )
        duration = (time.perf_counter() - started) * 1000
        totals = result.doc["totals"]
        outcome: Outcome = "stored" if written.stored else "stale_rejected"
        log.info(
            "rebuild_done",
            course_id=course_id,
            generation=generation,
            outcome=outcome,
            duration_ms=round(duration, 1),
            build_ms=round(build_ms, 2),
            upstream_requests=records.upstream_requests,
            skipped=len(result.skipped),
            raw_size=len(encoded.json),
        )
        return RebuildOutcome(
            course_id=course_id,
            generation=generation,
            outcome=outcome,
            duration_ms=duration,
            build_ms=build_ms,
            upstream_requests=records.upstream_requests,
            raw_size=len(encoded.json),
            gzip_size=len(encoded.gzip),
            zstd_size=len(encoded.zstd),
            skipped=len(result.skipped),
            units=totals["units"],
            lessons=totals["lessons"],
            resources=totals["resources"],
        )
