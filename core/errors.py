"""The one error hierarchy of course-bundles; every error carries the context it was raised with.

``retryable`` says whether trying the same thing again later can succeed; tasks retry only those
and dead-letter the rest at once. (R) marks the retryable ones.

    BundlesError
    +-- ConfigError
    +-- OneRosterError
    |   +-- InvalidFilterValue            a value outside the allow-list; nothing was sent
    |   +-- OneRosterAuthError        (R) token refused, or a fresh token refused too
    |   +-- OneRosterHTTPError            a non-retryable 4xx
    |   |   +-- OneRosterNotFound
    |   +-- OneRosterUnavailable      (R) 429/5xx/transport errors past the retry budget
    |   |   +-- OneRosterThrottled    (R) the fleet's budget (or a long Retry-After) said wait
    |   +-- OneRosterProtocolError        an answer we cannot parse
    +-- BundleError
    |   +-- CourseNotFound, StaleWrite, LookupMiss, AmbiguousRedirect
    |   +-- BundleTooLarge                the encoded bundle is above CB_BUNDLE_MAX_BYTES
    |   +-- BundleIdMismatch              a document for another course than the one asked for
    |   +-- BundleCorrupt             (R) a stored key is damaged; a rebuild was requested
    +-- FlightError
    |   +-- FlightTimeout             (R) a waiter's deadline passed
    |   +-- FlightFailed                  the leader failed (its error as text)
    |   +-- LeaseLost                 (R)
    +-- EventError
    |   +-- InvalidEvent                  breaks the contract (reasons say how)
    |   +-- BrokerUnavailable         (R)
    |   +-- FanoutTooLarge                a resource event names more courses than allowed
    |   +-- BacklogFull               (R) the events queue is at CB_EVENT_BACKLOG_MAX
    +-- AttemptError
        +-- NoActiveAttempt, AttemptConflict
"""

from __future__ import annotations

from typing import Any, ClassVar


class BundlesError(Exception):
    """Base of every error this package raises on purpose."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def __str__(self) -> str:
        if not self.context:
            return self.message
        ctx = " ".join(f"{k}={v!r}" for k, v in sorted(self.context.items()))
        return f"{self.message} ({ctx})"


class ConfigError(BundlesError):
    """Configuration is missing or contradictory."""


# --- OneRoster -------------------------------------------------------------------------------
class OneRosterError(BundlesError):
    """Talking to OneRoster failed."""


class InvalidFilterValue(OneRosterError, ValueError):
    """A filter value is outside the allow-list; nothing was sent."""


class OneRosterAuthError(OneRosterError):
    """The token endpoint refused us, or a fresh token was refused too."""

    retryable = True


class OneRosterHTTPError(OneRosterError):
    """OneRoster answered with a non-retryable error status."""

    def __init__(self, message: str, *, status: int, **context: Any) -> None:
        super().__init__(message, status=status, **context)
        self.status = status


class OneRosterNotFound(OneRosterHTTPError):
    """OneRoster answered 404 for a single record."""


class OneRosterUnavailable(OneRosterError):
    """Retries or the deadline were exhausted on 429/5xx/transport errors."""

    retryable = True


class OneRosterThrottled(OneRosterUnavailable):
    """No admission from the fleet's upstream budget within the short wait, or a ``Retry-After``
    longer than it: try again in ``retry_after_s`` (a worker backs off through the schedule)."""

    def __init__(self, message: str, *, retry_after_s: float, **context: Any) -> None:
        super().__init__(message, retry_after_s=round(retry_after_s, 3), **context)
        self.retry_after_s = retry_after_s


class OneRosterProtocolError(OneRosterError):
    """OneRoster answered something we cannot parse."""


# --- bundles ---------------------------------------------------------------------------------
class BundleError(BundlesError):
    """Building, storing or reading a bundle failed."""


class CourseNotFound(BundleError):
    """The course does not exist (or is deleted) upstream."""


class StaleWrite(BundleError):
    """A write carried a generation at or below the stored one and was rejected."""


class BundleIdMismatch(BundleError):
    """A bundle document names another course than the one it is written for; nothing was stored."""


class BundleCorrupt(BundleError):
    """A stored key of a course (or an index) is damaged: wrong type, bad checksum, undecodable.

    Retryable: the damaged course is rebuilt (a rebuild was requested when this was reported).
    """

    retryable = True


class LookupMiss(BundleError):
    """A unit, lesson, resource or redirect is not in the bundle."""


class AmbiguousRedirect(BundleError):
    """An assessment slug resolves to more than one place."""

    def __init__(self, message: str, *, candidates: list[str], **context: Any) -> None:
        super().__init__(message, candidates=candidates, **context)
        self.candidates = candidates


class BundleTooLarge(BundleError):
    """The course's bundle encodes to more bytes than the cap; it is refused, not stored."""

    def __init__(self, message: str, *, size: int, limit: int, **context: Any) -> None:
        super().__init__(message, size=size, limit=limit, **context)
        self.size = size
        self.limit = limit


# --- single-flight -------------------------------------------------------------------------
class FlightError(BundlesError):
    """A single-flight wait failed."""


class FlightTimeout(FlightError, TimeoutError):
    """A waiter's deadline passed before the flight finished and no stale value was available."""

    retryable = True


class FlightFailed(FlightError):
    """The leader of a cross-process flight failed; its error is carried as text."""


class LeaseLost(FlightError):
    """A leader found its lease taken by someone else (its write would be fenced)."""

    retryable = True


# --- events ----------------------------------------------------------------------------------
class EventError(BundlesError):
    """An event could not be accepted."""


class InvalidEvent(EventError):
    """An event breaks the contract; ``reasons`` says how."""

    def __init__(self, message: str, *, reasons: list[str], **context: Any) -> None:
        super().__init__(message, reasons=reasons, **context)
        self.reasons = reasons


class BrokerUnavailable(EventError):
    """The broker did not take the events; nothing was half-accepted."""

    retryable = True


class FanoutTooLarge(EventError):
    """A resource event would rebuild more courses than ``CB_RESOURCE_FANOUT_MAX``."""


class BacklogFull(EventError):
    """The events queue is at its limit; nothing was queued; retry after ``retry_after_s``."""

    retryable = True

    def __init__(self, message: str, *, retry_after_s: int, **context: Any) -> None:
        super().__init__(message, retry_after_s=retry_after_s, **context)
        self.retry_after_s = retry_after_s


# --- attempts --------------------------------------------------------------------------------
class AttemptError(BundlesError):
    """Attempt-pointer operations failed."""


class NoActiveAttempt(AttemptError):
    """There is no active attempt for this learner and resource."""


class AttemptConflict(AttemptError):
    """The active attempt is another number than the one named."""

    def __init__(self, message: str, *, active: int, **context: Any) -> None:
        super().__init__(message, active=active, **context)
        self.active = active
