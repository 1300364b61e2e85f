from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from core.errors import InvalidFilterValue
from core.oneroster.attempts import (
    aderive_next_attempt,
    derive_next_attempt,
    line_item_id,
    next_attempt_number,
)
from core.oneroster.client import OneRosterClient
from core.oneroster.models import AssessmentResult
from core.oneroster.protocol import ASSESSMENT_RESULTS
from tests.core.oneroster.conftest import make_async_client
from tests.core.oneroster.fakes import FakeClock, FakeOneRoster

MakeClient = Callable[..., OneRosterClient]
_ids = iter(range(10_000))


def result(
    student: str = "u1", attempt: int | None = None, status: str = "active", line: str = "r1_ali"
) -> AssessmentResult:
    return AssessmentResult.model_validate(
        {
            "sourcedId": f"ar{next(_ids)}",
            "status": status,
            "assessmentLineItem": {"sourcedId": line},
            "student": {"sourcedId": student},
            "metadata": None if attempt is None else {"attempt": attempt},
        }
    )


def test_line_item_id() -> None:
    assert line_item_id("r1") == "r1_ali"
    assert line_item_id("r1", "-li") == "r1-li"


def test_first_attempt_when_there_are_no_results() -> None:
    assert next_attempt_number([], "u1") == 1


def test_max_attempt_plus_one() -> None:
    assert next_attempt_number([result(attempt=1), result(attempt=4), result(attempt=2)], "u1") == 5


def test_count_plus_one_without_attempt_numbers() -> None:
    assert next_attempt_number([result(), result()], "u1") == 3


def test_only_the_learners_active_results_count() -> None:
    results = [
        result(attempt=2),
        result(attempt=9, status="tobedeleted"),
        result(attempt=7, student="u2"),
        result(status="inactive"),
    ]
    assert next_attempt_number(results, "u1") == 3
    assert next_attempt_number([result(status="tobedeleted")], "u1") == 1


def _add(fake: FakeOneRoster, student: str, attempt: int, line: str = "r1_ali") -> None:
    fake.add(
        ASSESSMENT_RESULTS.path,
        sourcedId=f"ar-{student}-{line}-{attempt}",
        assessmentLineItem={"sourcedId": line},
        student={"sourcedId": student},
        scoreDate="2024-05-01",
        metadata={"attempt": attempt},
    )


def test_derive_next_attempt_reads_one_learner_and_line_item(
    fake: FakeOneRoster, fake_client: MakeClient
) -> None:
    _add(fake, "u1", 1)
    _add(fake, "u1", 2)
    _add(fake, "u2", 5)
    _add(fake, "u1", 8, line="r2_ali")
    assert derive_next_attempt(fake_client(), "u1", "r1") == 3
    assert fake.filters() == ["assessmentLineItem.sourcedId='r1_ali' AND student.sourcedId='u1'"]


def test_derive_next_attempt_async(fake: FakeOneRoster) -> None:
    _add(fake, "u1", 1, line="r1-li")

    async def run() -> int:
        async with make_async_client(fake, FakeClock()) as aclient:
            return await aderive_next_attempt(aclient, "u1", "r1", suffix="-li")

    assert asyncio.run(run()) == 2


def test_an_unsafe_user_id_sends_nothing(fake: FakeOneRoster, fake_client: MakeClient) -> None:
    with pytest.raises(InvalidFilterValue):
        derive_next_attempt(fake_client(), "u1' OR student.sourcedId='u2", "r1")
    assert fake.requests == []
