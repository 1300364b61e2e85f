"""One fenced rebuild of one course: generation first, then OneRoster, then build, encode, swap."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from core.bundle.builder import build_bundle
from core.bundle.codec import encode_bundle
from core.bundle.limits import DEFAULT_LIMITS, BundleLimits
from core.bundle.store import BundleStore
from core.errors import CourseNotFound, FlightFailed
from core.keys import Keys
from core.logging import get_logger
from core.oneroster.models import CourseRecords
from core.singleflight.distributed import DistributedFlight

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
        limits: BundleLimits = DEFAULT_LIMITS,
    ) -> None:
        self._store = store
        self._fetch = fetch
        self._clock = clock
        self._limits = limits

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
        result = build_bundle(
            records, generation=generation, built_at=self._clock(), limits=self._limits
        )
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


def rebuild_in_flight(
    flight: DistributedFlight, keys: Keys, rebuilder: Rebuilder, course_id: str
) -> RebuildOutcome:
    """Rebuild as the leader of the course's build flight, so an API miss joins us.

    A flight led by someone else (an API miss) may have read OneRoster before this event's change,
    so its outcome is not trusted: we rebuild again after it, fenced as always.
    """
    name = keys.bundle_flight_name(course_id)
    try:
        flown = flight.run(name, lambda _lease: rebuilder.rebuild(course_id).as_dict())
    except FlightFailed:
        # We joined someone else's build and it failed; ours may still succeed.
        return rebuilder.rebuild(course_id)
    if flown.led:
        return RebuildOutcome(**flown.value)
    return rebuilder.rebuild(course_id)
