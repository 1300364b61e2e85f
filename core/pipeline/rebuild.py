"""One fenced rebuild of one course: generation first, then OneRoster, build, encode, check, swap.

With a ``PublishGuard`` (docs/bundle.md "Publish safety") a rebuild of a built course is
validated against the bundle it would replace before the swap (core/bundle/validation.py); a
suspicious build, or a ``404`` for a built course, is held for a confirmation re-read
(core/pipeline/confirmation.py) and the last good bundle stays served. A pinned course is
rebuilt and recorded but never swapped.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import orjson

from core.bundle.builder import BuildResult, build_bundle
from core.bundle.codec import EncodedBundle, encode_bundle
from core.bundle.holds import PINNED, HeldBuild, Pin, PublishHolds
from core.bundle.limits import DEFAULT_LIMITS, BundleLimits
from core.bundle.model import BundleDoc
from core.bundle.store import BundleStore, resource_ids_of
from core.bundle.validation import (
    DEFAULT_RULES,
    PUBLISH,
    BundleShape,
    Removals,
    Rules,
    Verdict,
    content_digest,
    validate,
)
from core.errors import BundleError, CourseNotFound, FlightFailed
from core.keys import Keys
from core.logging import get_logger
from core.oneroster.models import CourseRecords
from core.pipeline.confirmation import NOT_FOUND, ConfirmPolicy, Held, Read, Settlement, settle
from core.settings import Settings
from core.singleflight.distributed import DistributedFlight

log = get_logger(__name__)

# stored / not_found / stale_rejected as before; held: newly held for a confirmation re-read;
# holding: still held (nothing new); dropped: the held build was dropped, nothing published;
# pinned: built and recorded, not swapped.
Outcome = Literal["stored", "stale_rejected", "not_found", "held", "holding", "dropped", "pinned"]
FetchCourse = Callable[[str], CourseRecords]
POSITIVE_DELETE_STATUSES = frozenset({"tobedeleted", "inactive"})


@dataclass(frozen=True, slots=True)
class PublishGuard:
    """What a guarded rebuild needs: holds and pins in Redis, the rules, the re-read policy."""

    holds: PublishHolds
    rules: Rules = DEFAULT_RULES
    policy: ConfirmPolicy = field(default_factory=ConfirmPolicy)
    validate: bool = True  # False: no validation (holds, pins and deletion evidence still apply)


def publish_guard(holds: PublishHolds, settings: Settings) -> PublishGuard:
    """The guard as the settings describe it (``CB_PUBLISH_*``)."""
    return PublishGuard(
        holds,
        rules=Rules(
            max_lesson_loss=settings.publish_max_lesson_loss,
            max_resource_loss=settings.publish_max_resource_loss,
        ),
        policy=ConfirmPolicy(
            delay_s=settings.publish_confirm_delay_s,
            max_delay_s=settings.publish_confirm_max_delay_s,
            max_attempts=settings.publish_confirm_max_attempts,
        ),
        validate=settings.publish_guard,
    )


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
    reason: str = ""  # why held / dropped / how published (confirmed, recovered)
    confirm_in_s: float | None = None  # a confirmation re-read is due in this many seconds
    guard_ms: float = 0.0  # CPU of validation and its bookkeeping (shape, digest)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (a cross-process flight carries it to the waiters)."""
        return asdict(self)


@dataclass(slots=True)
class _Attempt:
    """One rebuild in progress: what was read and built, and what it cost so far."""

    course_id: str
    generation: int
    started: float
    result: BuildResult | None = None
    encoded: EncodedBundle | None = None
    upstream_requests: int = 0
    build_ms: float = 0.0
    guard_ms: float = 0.0
    digest: str = NOT_FOUND
    shape: BundleShape | None = None

    def outcome(self, outcome: Outcome, **extra: Any) -> RebuildOutcome:
        counts: dict[str, Any] = {}
        if self.result is not None and self.encoded is not None:
            totals = self.result.doc["totals"]
            counts = {
                "raw_size": len(self.encoded.json),
                "gzip_size": len(self.encoded.gzip),
                "zstd_size": len(self.encoded.zstd),
                "skipped": len(self.result.skipped),
                "units": totals["units"],
                "lessons": totals["lessons"],
                "resources": totals["resources"],
            }
        return RebuildOutcome(
            course_id=self.course_id,
            generation=self.generation,
            outcome=outcome,
            duration_ms=(time.perf_counter() - self.started) * 1000,
            build_ms=self.build_ms,
            upstream_requests=self.upstream_requests,
            guard_ms=self.guard_ms,
            **counts,
            **extra,
        )


class Rebuilder:
    """Builds and stores bundles; the store's fencing makes a stale rebuild harmless."""

    def __init__(
        self,
        store: BundleStore,
        fetch: FetchCourse,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        limits: BundleLimits = DEFAULT_LIMITS,
        guard: PublishGuard | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._fetch = fetch
        self._clock = clock
        self._limits = limits
        self._guard = guard
        self._now = now

    @property
    def guard(self) -> PublishGuard | None:
        """The publish guard (None: every build is published, as before issue 14)."""
        return self._guard

    def rebuild(self, course_id: str) -> RebuildOutcome:
        """Rebuild now. ``OneRosterError`` propagates (callers retry); a gone course is deleted.

        Guarded: a ``404`` for a built course is held until a re-read confirms it; a course
        reported ``tobedeleted`` (positive evidence) is deleted at once.
        """
        # The fencing token is taken before reading upstream: a later read carries a higher one.
        started = time.perf_counter()
        run = _Attempt(course_id, self._store.next_generation(course_id), started)
        try:
            records = self._fetch(course_id)
            cpu = time.process_time()
            run.result = build_bundle(
                records, generation=run.generation, built_at=self._clock(), limits=self._limits
            )
        except CourseNotFound as exc:
            return self._gone(run, exc)
        run.upstream_requests = records.upstream_requests
        run.encoded = encode_bundle(run.result.doc)
        run.build_ms = (time.process_time() - cpu) * 1000
        if self._guard is None:
            return self._publish(run)
        return self._guarded(run, self._guard)

    # --- the guarded path -------------------------------------------------------------------
    def _guarded(self, run: _Attempt, guard: PublishGuard) -> RebuildOutcome:
        assert run.result is not None and run.encoded is not None
        cpu = time.process_time()
        pin, held, members = guard.holds.state(run.course_id)
        run.shape = BundleShape.of(run.result.doc)
        run.digest = content_digest(run.encoded.json)
        verdict: Verdict = PUBLISH
        if guard.validate:
            verdict = validate(
                run.shape,
                self._store.shape(run.course_id),
                removals=Removals.from_members(members),
                skipped=[(r.entity, r.sourced_id, r.reason) for r in run.result.skipped],
                rules=guard.rules,
            )
        run.guard_ms = (time.process_time() - cpu) * 1000
        if pin is not None:
            return self._frozen(run, guard, pin, verdict.detail)
        now = self._now()
        decision = settle(_view(held), Read(run.digest, verdict.ok), now=now, policy=guard.policy)
        if decision.action not in ("publish", "confirm"):
            return self._not_published(run, guard, decision, verdict, held=held, now=now)
        reason = "confirmed" if decision.action == "confirm" else decision.dropped
        out = self._publish(run, reason=reason)
        if out.outcome == "stored":
            guard.holds.settle_removals(run.course_id, members)
            if held is not None:
                guard.holds.drop(run.course_id)
                if held.reason != PINNED:
                    _log_settled(run, held, decision, now)
        return out

    def _not_published(
        self,
        run: _Attempt,
        guard: PublishGuard,
        decision: Settlement,
        verdict: Verdict,
        *,
        held: HeldBuild | None,
        now: float,
    ) -> RebuildOutcome:
        if decision.action == "keep":
            assert held is not None
            confirm_in = max(0.0, held.due - now)
            log.info(
                "publish_still_held",
                course_id=run.course_id,
                generation=run.generation,
                outcome="holding",
                reason=held.reason,
                confirm_in_s=round(confirm_in, 2),
            )
            return run.outcome("holding", reason=held.reason, confirm_in_s=confirm_in)
        if held is not None:
            guard.holds.drop(run.course_id)
            if held.reason != PINNED:  # what a pinned rebuild recorded was never a suspect
                _log_settled(run, held, decision, now)
        if decision.action == "give_up":
            return run.outcome("dropped", reason="gave_up")
        reason = verdict.reason or NOT_FOUND
        detail = verdict.detail or "OneRoster answered 404 for a built course"
        guard.holds.hold(
            self._held(run, reason, detail, attempt=decision.attempt, due=now + decision.delay_s)
        )
        log.warning(
            "publish_held",
            course_id=run.course_id,
            generation=run.generation,
            outcome="held",
            reason=reason,
            detail=detail,
            attempt=decision.attempt,
            confirm_in_s=round(decision.delay_s, 2),
        )
        return run.outcome("held", reason=reason, confirm_in_s=decision.delay_s)

    def _frozen(self, run: _Attempt, guard: PublishGuard, pin: Pin, detail: str) -> RebuildOutcome:
        """A pinned course: record what the rebuild found, swap nothing."""
        guard.holds.hold(self._held(run, PINNED, detail or pin.note, attempt=0, due=0.0))
        log.info(
            "publish_pinned",
            course_id=run.course_id,
            generation=run.generation,
            outcome="pinned",
            reason="pinned",
        )
        return run.outcome("pinned", reason="pinned")

    def _held(
        self, run: _Attempt, reason: str, detail: str, *, attempt: int, due: float
    ) -> HeldBuild:
        return HeldBuild(
            course_id=run.course_id,
            reason=reason,
            detail=detail,
            generation=run.generation,
            digest=run.digest,
            held_at=self._now(),
            due=due,
            attempts=attempt,
            zstd=None if run.encoded is None else run.encoded.zstd,
            source_modified=(run.result.source_modified or "") if run.result else "",
            totals=orjson.dumps(run.result.doc["totals"] if run.result else {}).decode(),
        )

    # --- gone upstream ----------------------------------------------------------------------
    def _gone(self, run: _Attempt, exc: CourseNotFound) -> RebuildOutcome:
        course_id = run.course_id
        evidence = exc.context.get("status") in POSITIVE_DELETE_STATUSES
        reason = "tobedeleted" if evidence else "not_found"
        guard = self._guard
        if not self._store.is_known(course_id):
            # Never built: a tombstone would only let unknown-id probes grow Redis.
            self._store.discard_fence(course_id)
        elif guard is not None and self._store.generation(course_id) is not None:
            pin, held, _members = guard.holds.state(course_id)
            if pin is not None:
                return self._frozen(run, guard, pin, f"gone upstream ({reason})")
            if not evidence:
                # A 404 alone is not evidence: hold the deletion until a re-read confirms it.
                now = self._now()
                read = Read(NOT_FOUND, valid=False)
                decision = settle(_view(held), read, now=now, policy=guard.policy)
                if decision.action != "confirm":
                    return self._not_published(run, guard, decision, Verdict(), held=held, now=now)
                assert held is not None
                _log_settled(run, held, decision, now)
                reason = "confirmed"
            self._store.delete(course_id)
        else:
            self._store.delete(course_id)
        out = run.outcome("not_found", reason=reason)
        log.info(
            "rebuild_course_gone",
            course_id=course_id,
            generation=run.generation,
            outcome="not_found",
            reason=reason,
            duration_ms=round(out.duration_ms, 1),
        )
        return out

    # --- publishing -------------------------------------------------------------------------
    def _publish(self, run: _Attempt, *, reason: str = "") -> RebuildOutcome:
        result, encoded = run.result, run.encoded
        assert result is not None and encoded is not None
        written = self._store.write(
            run.course_id,
            result.doc,
            encoded,
            upstream_requests=run.upstream_requests,
            source_modified=result.source_modified,
            resource_ids=result.resource_ids,
            shape=run.shape,
            digest=None if run.shape is None else run.digest,
        )
        outcome: Outcome = "stored" if written.stored else "stale_rejected"
        out = run.outcome(outcome, reason=reason)
        log.info(
            "rebuild_done",
            course_id=run.course_id,
            generation=run.generation,
            outcome=outcome,
            reason=reason or None,
            duration_ms=round(out.duration_ms, 1),
            build_ms=round(run.build_ms, 2),
            upstream_requests=run.upstream_requests,
            skipped=len(result.skipped),
            raw_size=len(encoded.json),
        )
        return out

    def republish(self, course_id: str, doc: BundleDoc, *, reason: str) -> RebuildOutcome:
        """Swap ``doc`` in again under a fresh, higher generation (rollback, approving a hold).

        Goes through the fence like any rebuild, so readers and near caches follow at once;
        a pin does not stop it (this is the operator's own action).
        """
        if doc["courseId"] != course_id:
            raise BundleError("document is another course's", course_id=course_id)
        run = _Attempt(course_id, self._store.next_generation(course_id), time.perf_counter())
        fresh: BundleDoc = {**doc, "generation": run.generation}
        encoded = encode_bundle(fresh)
        written = self._store.write(course_id, fresh, encoded, resource_ids=resource_ids_of(fresh))
        outcome: Outcome = "stored" if written.stored else "stale_rejected"
        log.warning(
            "publish_republished",
            course_id=course_id,
            generation=run.generation,
            outcome=outcome,
            reason=reason,
        )
        totals = fresh["totals"]
        return run.outcome(
            outcome,
            reason=reason,
            raw_size=len(encoded.json),
            gzip_size=len(encoded.gzip),
            zstd_size=len(encoded.zstd),
            units=totals["units"],
            lessons=totals["lessons"],
            resources=totals["resources"],
        )


def _view(held: HeldBuild | None) -> Held | None:
    """What confirmation compares against; a build recorded while pinned is not a suspect."""
    if held is None or held.reason == PINNED:
        return None
    return Held(held.digest, held.attempts, held.due)


def _log_settled(run: _Attempt, held: HeldBuild, decision: Settlement, now: float) -> None:
    confirmed = decision.action == "confirm"
    log.warning(
        "publish_confirmed" if confirmed else "publish_dropped",
        course_id=run.course_id,
        generation=run.generation,
        held_generation=held.generation,
        outcome="confirmed" if confirmed else "dropped",
        reason=held.reason if confirmed else decision.dropped,
        held_reason=held.reason,
        held_for_s=round(now - held.held_at, 2),
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
