"""The rebuild protocol: what one rebuild message does, decided and carried out in one place.

A message asks "rebuild course C" (``failures`` and ``trailing`` say which chain it belongs to).
``decide`` names what it does:

    Parked       the course is dead-lettered for failures retrying cannot fix: nothing
    BackingOff   the course's own retry is pending until T: this message is covered by it
    Covered      nothing changed since the last rebuild (and, for a confirmation re-read, nothing
                 is held any more): nothing
    WaitUntil    a trailing rebuild while events still arrive: ask again at T
    HandedOff    another rebuild runs: it trails itself if events arrived, nothing here
    Run          the lease is ours: build, then settle the marks or trail once

``handle`` carries the decision out and gives any failure its verdict (core/pipeline/failures.py).
Delayed work goes through ``RebuildRequests`` (the durable schedule); the build, the dead letters
and the metrics sit behind small interfaces, so none of this needs Celery. A build that was held
(docs/bundle.md "Publish safety") asks ``ConfirmRequests`` for its re-read: a ``confirm``
message, due after the confirmation delay, that rebuilds the course even though nothing is dirty.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from core.logging import get_logger
from core.pipeline.debounce import Debouncer, RebuildTicket, Wait
from core.pipeline.failures import (
    FailureKind,
    FailurePolicy,
    Verdict,
    classify,
    describe,
    is_wrong_type,
)
from core.pipeline.rebuild import RebuildOutcome

log = get_logger(__name__)


class RebuildRequests(Protocol):
    """Asks for a rebuild now (``countdown`` 0) or later (the durable schedule)."""

    def __call__(self, course_id: str, *, countdown: float, retries: int, trailing: bool) -> None:
        """Queue a rebuild message for the course."""


class ConfirmRequests(Protocol):
    """Asks for the confirmation re-read of a held build in ``countdown`` seconds."""

    def __call__(self, course_id: str, *, countdown: float) -> None:
        """Put the course's confirmation on the durable schedule (one per course)."""


class Generations(Protocol):
    """The store's view the protocol needs: is there a bundle at all."""

    def generation(self, course_id: str) -> int | None:
        """The stored generation, or None if never built."""


class DeadLetterSink(Protocol):
    """Where a course that gave up goes (core/events/dlq.py)."""

    def add(
        self,
        *,
        reason: str,
        payload: Any,
        source: Any,
        context: Any = None,
        attempts: int = 1,
    ) -> str:
        """Store a dead letter; its id."""


class RebuildObserver(Protocol):
    """Metrics hooks: counted outcomes, failures by verdict, finished builds."""

    def counted(self, outcome: str) -> None:
        """One message ended with ``outcome`` (started, coalesced, succeeded, retried, ...)."""

    def failed(self, kind: FailureKind, verdict: str) -> None:
        """One failure got ``verdict``."""

    def built(self, outcome: RebuildOutcome, dirty_for_s: float | None) -> None:
        """A build finished (stored, stale_rejected or not_found)."""


class NullObserver:
    """Observes nothing (tests, the CLI)."""

    def counted(self, outcome: str) -> None:
        """Nothing."""

    def failed(self, kind: FailureKind, verdict: str) -> None:
        """Nothing."""

    def built(self, outcome: RebuildOutcome, dirty_for_s: float | None) -> None:
        """Nothing."""


@dataclass(frozen=True, slots=True)
class RebuildMessage:
    """One rebuild request as a task message carries it."""

    course_id: str
    failures: int = 0
    trailing: bool = False
    confirm: bool = False  # the confirmation re-read of a held build


@dataclass(frozen=True, slots=True)
class Parked:
    """Dead-lettered; an event or a replay brings the course back."""


@dataclass(frozen=True, slots=True)
class BackingOff:
    """The course's own retry is pending until ``until``."""

    until: float


@dataclass(frozen=True, slots=True)
class Covered:
    """An earlier rebuild covered every change."""


@dataclass(frozen=True, slots=True)
class WaitUntil:
    """Events still arrive: a trailing rebuild asks again after ``seconds``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class HandedOff:
    """Another rebuild holds the lease; it trails itself."""


@dataclass(frozen=True, slots=True)
class Run:
    """The lease is ours (``had_failures``: the course's backoff clears once this succeeds)."""

    ticket: RebuildTicket
    had_failures: bool = False


Decision = Parked | BackingOff | Covered | WaitUntil | HandedOff | Run


class RebuildProtocol:
    """Decides and carries out rebuild messages for every course (one per process is enough)."""

    def __init__(
        self,
        debouncer: Debouncer,
        store: Generations,
        *,
        build: Callable[[str], RebuildOutcome],
        requests: RebuildRequests,
        dead_letters: DeadLetterSink,
        policy: FailurePolicy,
        observer: RebuildObserver | None = None,
        task_name: str = "rebuild",
        clock: Callable[[], float] = time.time,
        confirmations: ConfirmRequests | None = None,
        is_held: Callable[[str], bool] | None = None,
    ) -> None:
        self._debouncer = debouncer
        self._store = store
        self._build = build
        self._requests = requests
        self._dlq = dead_letters
        self._policy = policy
        self._observer = observer or NullObserver()
        self._task_name = task_name
        self._clock = clock
        self._confirmations = confirmations
        self._is_held = is_held

    # --- deciding ---------------------------------------------------------------------------
    def decide(self, msg: RebuildMessage) -> Decision:
        """What this message does; ``Run`` holds the course's lease."""
        course_id = msg.course_id
        backoff = self._debouncer.backoff(course_id)
        if backoff is not None and backoff.parked:
            return Parked()
        # The course's last rebuild failed and its one retry is pending: until it is due, that
        # retry covers this message (an older chain, or an event before the hold). From its due
        # time on, whichever message comes first runs it (the retry's own entry may have been
        # replaced, or lost).
        if backoff is not None and msg.failures != backoff.failures and self._clock() < backoff.due:
            return BackingOff(backoff.due)
        if (
            not self._debouncer.is_dirty(course_id)
            and self._store.generation(course_id) is not None
            and not (msg.confirm and self._is_held is not None and self._is_held(course_id))
        ):
            return Covered()
        ticket = self._debouncer.begin(course_id, trailing=msg.trailing)
        if isinstance(ticket, Wait):
            return WaitUntil(ticket.seconds)
        if ticket is None:
            return HandedOff()
        return Run(ticket, had_failures=backoff is not None)

    # --- carrying out -----------------------------------------------------------------------
    def handle(self, msg: RebuildMessage) -> dict[str, Any]:
        """Carry the message out; every failure takes the course's bounded path."""
        try:
            return self._handle(msg)
        except Exception as exc:  # noqa: BLE001 - every failure, ours or not, gets a verdict
            try:
                return self._failed(msg.course_id, exc)
            except Exception as unrecorded:  # noqa: BLE001 - Redis itself is failing
                # The course stays dirty (if Redis kept it), so reconcile requeues it later.
                self._observer.failed(classify(exc), "unrecorded")
                log.error(
                    "rebuild_failure_unrecorded",
                    course_id=msg.course_id,
                    outcome="left_dirty",
                    reason=describe(exc),
                    error=describe(unrecorded),
                )
                return {"outcome": "unrecorded"}

    def _handle(self, msg: RebuildMessage) -> dict[str, Any]:
        course_id = msg.course_id
        decision = self.decide(msg)
        if isinstance(decision, Parked):
            self._observer.counted("coalesced")
            return {"outcome": "parked"}
        if isinstance(decision, BackingOff):
            self._observer.counted("coalesced")
            return {"outcome": "backing_off"}
        if isinstance(decision, Covered):
            self._observer.counted("coalesced")
            return {"outcome": "clean"}
        if isinstance(decision, WaitUntil):
            self._requests(
                course_id, countdown=decision.seconds, retries=msg.failures, trailing=True
            )
            log.debug("rebuild_waiting", course_id=course_id, outcome="events_arriving")
            return {"outcome": "waiting"}
        if isinstance(decision, HandedOff):
            self._observer.counted("coalesced")
            log.info("rebuild_deferred", course_id=course_id, outcome="lease_held")
            return {"outcome": "deferred"}
        return self._run(decision.ticket, had_failures=decision.had_failures)

    def _run(self, ticket: RebuildTicket, *, had_failures: bool) -> dict[str, Any]:
        course_id = ticket.course_id
        self._observer.counted("started")
        try:
            with self._heartbeat(ticket):
                outcome = self._build(course_id)
        except Exception as exc:
            if classify(exc) is not FailureKind.PERMANENT:
                self._debouncer.release(ticket)
                raise
            # Retrying cannot help until the course changes upstream: settle what this build
            # covered, but an event that arrived meanwhile (perhaps the fix) still trails.
            finish = self._debouncer.finish(ticket)
            if finish.trailing_countdown_s is not None:
                self._requests(
                    course_id, countdown=finish.trailing_countdown_s, retries=0, trailing=True
                )
            self._debouncer.clear_failures(course_id)
            return self._give_up(
                course_id,
                FailureKind.PERMANENT,
                Verdict.DEAD_LETTER,
                failures=1,
                reason=describe(exc),
            )
        if had_failures:
            self._debouncer.clear_failures(course_id)
        dirty_for = self._clock() - ticket.dirty_since_ms / 1000 if ticket.dirty_since_ms else None
        self._observer.built(outcome, dirty_for)
        finish = self._debouncer.finish(ticket)
        if outcome.confirm_in_s is not None and self._confirmations is not None:
            self._confirmations(course_id, countdown=outcome.confirm_in_s)
        if finish.trailing_countdown_s is not None:
            self._requests(
                course_id, countdown=finish.trailing_countdown_s, retries=0, trailing=True
            )
        return {"outcome": outcome.outcome, "generation": outcome.generation, "clean": finish.clean}

    @contextmanager
    def _heartbeat(self, ticket: RebuildTicket) -> Iterator[None]:
        """Keep the rebuild lease alive while we work; a dead worker's lease lapses on its own."""
        stop = threading.Event()
        interval = max(0.5, self._debouncer.lease_ms / 3000.0)

        def beat() -> None:
            while not stop.wait(interval):
                if not self._debouncer.extend(ticket):
                    return

        thread = threading.Thread(target=beat, name=f"lease-{ticket.course_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=1)

    # --- failing ----------------------------------------------------------------------------
    def _failed(self, course_id: str, exc: Exception) -> dict[str, Any]:
        """Retry after the course's backoff, dead-letter, or park.

        Retryable failures keep retrying at the capped backoff after their one dead letter, so
        the course heals by itself when OneRoster is back; the dead letter tells a person it has
        been failing for a while. Unexpected ones are parked once the budget is spent.
        """
        kind = classify(exc)
        reason = describe(exc)
        if is_wrong_type(exc):
            repaired = self._debouncer.repair(course_id)
            if repaired:
                log.warning("rebuild_keys_repaired", course_id=course_id, keys=repaired)
        if kind is FailureKind.PERMANENT:
            # Raised before the lease was taken (a failure under the lease settles in _run):
            # nothing settled the marks, so reconcile would requeue the course on every pass.
            self._debouncer.clear_failures(course_id)
            self._debouncer.clear(course_id)
            return self._give_up(course_id, kind, Verdict.DEAD_LETTER, failures=1, reason=reason)
        policy = self._policy
        backoff = self._debouncer.record_failure(
            course_id,
            policy.backoff_s,
            park=lambda n: policy.verdict(kind, n) is Verdict.PARK,
        )
        verdict = policy.verdict(kind, backoff.failures)
        if verdict is Verdict.PARK:
            return self._give_up(course_id, kind, verdict, failures=backoff.failures, reason=reason)
        if verdict is Verdict.DEAD_LETTER_AND_RETRY:
            self._dead_letter(
                course_id,
                f"rebuild kept failing after {backoff.failures} tries: {reason}",
                attempts=backoff.failures,
            )
        self._observer.counted("retried")
        self._observer.failed(kind, verdict.value)
        countdown = max(0.0, backoff.due - self._clock())
        log.warning(
            "rebuild_retry",
            course_id=course_id,
            failures=backoff.failures,
            countdown_s=round(countdown, 2),
            kind=kind.value,
            outcome=verdict.value,
            reason=reason,
        )
        self._requests(course_id, countdown=countdown, retries=backoff.failures, trailing=False)
        return {"outcome": "retry", "failures": backoff.failures}

    def _give_up(
        self, course_id: str, kind: FailureKind, verdict: Verdict, *, failures: int, reason: str
    ) -> dict[str, Any]:
        parked = verdict is Verdict.PARK
        if parked:
            why = f"rebuild parked after {failures} failures (retrying cannot fix it): {reason}"
        else:
            why = f"rebuild failed (not retryable): {reason}"
        self._dead_letter(course_id, why, attempts=failures)
        self._observer.failed(kind, verdict.value)
        log.error(
            "rebuild_failed",
            course_id=course_id,
            failures=failures,
            kind=kind.value,
            outcome="parked" if parked else "dead_lettered",
            reason=reason,
        )
        return {"outcome": "parked" if parked else "failed"}

    def _dead_letter(self, course_id: str, reason: str, *, attempts: int) -> None:
        self._dlq.add(
            reason=reason,
            payload={"courseId": course_id},
            source="task",
            context={"task": self._task_name, "course_id": course_id},
            attempts=attempts,
        )
        self._observer.counted("failed")
