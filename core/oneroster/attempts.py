"""Attempt numbers from the gradebook: the rule is pure, the read is one filtered list."""

from __future__ import annotations

from collections.abc import Sequence

from core.oneroster.aclient import AsyncOneRosterClient
from core.oneroster.client import OneRosterClient
from core.oneroster.filters import filter_expr, predicate
from core.oneroster.models import AssessmentResult
from core.oneroster.protocol import ASSESSMENT_RESULTS, OneRosterProtocol, Op

DEFAULT_SUFFIX = "_ali"


def line_item_id(resource_id: str, suffix: str = DEFAULT_SUFFIX) -> str:
    """The assessment line item of resource ``R``: ``R_ali`` by default."""
    return f"{resource_id}{suffix}"


def next_attempt_number(results: Sequence[AssessmentResult], student_id: str) -> int:
    """``max(metadata.attempt) + 1`` over the student's active results; ``count + 1`` when none
    of them carries an attempt number; ``1`` when there are none."""
    mine = [r for r in results if r.is_active and r.student.sourcedId == student_id]
    numbers = [r.attempt for r in mine if r.attempt is not None]
    if numbers:
        return max(numbers) + 1
    return len(mine) + 1


def next_attempt_op(
    proto: OneRosterProtocol, user_id: str, resource_id: str, suffix: str = DEFAULT_SUFFIX
) -> Op[int]:
    """Read the learner's results for the resource's line item and apply the rule."""
    flt = filter_expr(
        predicate("assessmentLineItem.sourcedId", "=", line_item_id(resource_id, suffix)),
        predicate("student.sourcedId", "=", user_id),
    )
    results = yield from proto.list_all(ASSESSMENT_RESULTS, flt)
    return next_attempt_number(results, user_id)


def derive_next_attempt(
    client: OneRosterClient, user_id: str, resource_id: str, *, suffix: str = DEFAULT_SUFFIX
) -> int:
    """The next attempt number of ``user_id`` on ``resource_id`` according to OneRoster."""
    return client.run(next_attempt_op(client.protocol, user_id, resource_id, suffix))


async def aderive_next_attempt(
    aclient: AsyncOneRosterClient, user_id: str, resource_id: str, *, suffix: str = DEFAULT_SUFFIX
) -> int:
    """Async twin of :func:`derive_next_attempt`."""
    return await aclient.run(next_attempt_op(aclient.protocol, user_id, resource_id, suffix))
