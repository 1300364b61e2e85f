"""What a failed rebuild or event leads to: every exception, ours or not, gets a bounded path.

retryable   a BundlesError marked retryable, or Redis unreachable: back off and retry; past
            the budget, dead-letter once and keep retrying at the capped backoff (an outage
            heals by itself)
permanent   a BundlesError that retrying cannot fix: dead-letter at once
unexpected  anything else (a soft time limit, WRONGTYPE from a damaged key, a bug tripped by
            an odd record): back off and retry within the budget, then dead-letter and park
            the course until an event or a replay
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

import redis

from core.errors import BundlesError

# A course's pending retry this long past its due time is taken as lost (its message never came):
# reconcile requeues the course.
RETRY_GRACE_S = 30.0


class FailureKind(enum.Enum):
    """How a failure is handled (see the module docstring)."""

    RETRYABLE = "retryable"
    PERMANENT = "permanent"
    UNEXPECTED = "unexpected"


class Verdict(enum.Enum):
    """The next step after the ``n``-th consecutive failure."""

    RETRY = "retry"  # back off, then try again
    DEAD_LETTER_AND_RETRY = "dead_letter_and_retry"  # tell a person, keep healing
    DEAD_LETTER = "dead_letter"  # permanent: settle, nothing to retry
    PARK = "park"  # dead-letter; no more retries until an event or a replay


def classify(exc: BaseException) -> FailureKind:
    """The failure kind of any exception."""
    if isinstance(exc, BundlesError):
        return FailureKind.RETRYABLE if exc.retryable else FailureKind.PERMANENT
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return FailureKind.RETRYABLE
    return FailureKind.UNEXPECTED


def describe(exc: BaseException) -> str:
    """The exception as one line for a dead letter or a log: type and message, never locals."""
    text = str(exc)
    name = type(exc).__name__
    if isinstance(exc, BundlesError):
        return text
    return f"{name}: {text}" if text else name


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """The retry budget and the backoff curve shared by rebuilds and events."""

    max_retries: int = 8
    base_s: float = 0.5
    cap_s: float = 60.0

    def verdict(self, kind: FailureKind, failures: int) -> Verdict:
        """What to do after ``failures`` consecutive failures of this kind (1 = the first)."""
        if kind is FailureKind.PERMANENT:
            return Verdict.DEAD_LETTER
        if failures < self.max_retries:
            return Verdict.RETRY
        if kind is FailureKind.UNEXPECTED:
            return Verdict.PARK
        return Verdict.DEAD_LETTER_AND_RETRY if failures == self.max_retries else Verdict.RETRY

    def backoff_s(self, failures: int, rng: random.Random | None = None) -> float:
        """``base`` doubling per consecutive failure, capped, with jitter down to half."""
        draw = (rng or random).uniform(0.5, 1.0)
        doublings = min(max(0, failures - 1), 40)  # past the cap anyway; no float overflow
        return float(min(self.cap_s, self.base_s * 2**doublings) * draw)


class FailureUnrecorded(Exception):
    """A failure could not be given its verdict (Redis refused the retry and the dead letter):
    the task hands the message back to the broker instead of acknowledging it."""


def is_wrong_type(exc: BaseException) -> bool:
    """Redis refused a command because a key holds another type (a damaged or foreign key)."""
    return isinstance(exc, redis.ResponseError) and str(exc).startswith("WRONGTYPE")
