"""Failure verdicts: every exception gets a bounded path, whatever raised it."""

from __future__ import annotations

import random

import pytest
import redis

from core.errors import CourseNotFound, OneRosterHTTPError, OneRosterUnavailable
from core.pipeline.failures import (
    FailureKind,
    FailurePolicy,
    Verdict,
    classify,
    describe,
    is_wrong_type,
)


class SoftTimeLimit(Exception):
    """Stands in for celery's SoftTimeLimitExceeded: core knows nothing of Celery."""


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (OneRosterUnavailable("down"), FailureKind.RETRYABLE),
        (redis.ConnectionError("refused"), FailureKind.RETRYABLE),
        (redis.TimeoutError("slow"), FailureKind.RETRYABLE),
        (OneRosterHTTPError("forbidden", status=403), FailureKind.PERMANENT),
        (CourseNotFound("gone"), FailureKind.PERMANENT),
        (redis.ResponseError("WRONGTYPE Operation against a key"), FailureKind.UNEXPECTED),
        (KeyError("metadata"), FailureKind.UNEXPECTED),
        (SoftTimeLimit(), FailureKind.UNEXPECTED),
    ],
)
def test_every_exception_has_a_kind(exc: Exception, kind: FailureKind) -> None:
    assert classify(exc) is kind


def test_unexpected_failures_are_parked_once_the_budget_is_spent() -> None:
    policy = FailurePolicy(max_retries=3)
    verdicts = [policy.verdict(FailureKind.UNEXPECTED, n) for n in range(1, 6)]
    assert verdicts == [Verdict.RETRY, Verdict.RETRY, Verdict.PARK, Verdict.PARK, Verdict.PARK]


def test_retryable_failures_dead_letter_once_and_keep_healing() -> None:
    policy = FailurePolicy(max_retries=3)
    verdicts = [policy.verdict(FailureKind.RETRYABLE, n) for n in range(1, 6)]
    assert verdicts == [
        Verdict.RETRY,
        Verdict.RETRY,
        Verdict.DEAD_LETTER_AND_RETRY,
        Verdict.RETRY,
        Verdict.RETRY,
    ]


def test_permanent_failures_are_dead_lettered_at_once() -> None:
    assert FailurePolicy().verdict(FailureKind.PERMANENT, 1) is Verdict.DEAD_LETTER


def test_backoff_doubles_and_is_capped() -> None:
    policy = FailurePolicy(base_s=0.5, cap_s=60.0)
    rng = random.Random(7)
    waits = [policy.backoff_s(n, rng) for n in range(1, 12)]
    assert all(0.25 <= w <= 0.5 for w in waits[:1])
    assert all(w <= 60.0 for w in waits)
    assert waits[-1] >= 30.0


def test_descriptions_name_foreign_exceptions_but_keep_ours_as_they_are() -> None:
    assert describe(KeyError("metadata")) == "KeyError: 'metadata'"
    assert describe(SoftTimeLimit()) == "SoftTimeLimit"
    assert describe(OneRosterUnavailable("down", course_id="c1")) == "down (course_id='c1')"


def test_wrong_type_is_recognised() -> None:
    assert is_wrong_type(redis.ResponseError("WRONGTYPE Operation against a key"))
    assert not is_wrong_type(redis.ResponseError("NOSCRIPT"))
    assert not is_wrong_type(KeyError("WRONGTYPE"))


def test_backoff_never_overflows_however_long_the_outage() -> None:
    assert FailurePolicy(cap_s=60.0).backoff_s(5_000) <= 60.0
