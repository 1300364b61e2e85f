"""The clients take the fleet's budget around every request, the token endpoint included; a
429 pauses every process sharing the budget; the request class comes from the caller."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest
import respx

from core.budget.bucket import Admission, Outcome
from core.budget.classes import RequestClass, request_class
from core.budget.gate import BudgetStats, Gate
from core.budget.policy import BudgetPolicy
from core.budget.store import LocalBudget
from core.errors import OneRosterThrottled, OneRosterUnavailable
from core.oneroster.aclient import AsyncOneRosterClient
from core.oneroster.client import OneRosterClient
from core.oneroster.protocol import COURSES
from tests.core.oneroster.fakes import FakeClock, make_settings, token_response

COURSES_PATH = COURSES.path


def ok_courses() -> httpx.Response:
    body = {"courses": [{"sourcedId": "c01", "status": "active", "title": "C", "metadata": None}]}
    return httpx.Response(200, json=body, headers={"X-Total-Count": "1"})


class Recording(LocalBudget):
    """A local budget on the fake clock that writes down what it is asked."""

    def __init__(self, policy: BudgetPolicy, clock: FakeClock, log: list[Any]) -> None:
        super().__init__(policy, clock_ms=lambda: round(clock.now * 1000))
        self.log = log

    def admit(self, cls: RequestClass, lease_id: str) -> Admission:
        decision = super().admit(cls, lease_id)
        if decision.admitted:
            self.log.append(("admit", cls))
        return decision

    def release(self, lease_id: str, outcome: Outcome, retry_after_s: float) -> bool:
        self.log.append(("release", outcome, retry_after_s))
        return super().release(lease_id, outcome, retry_after_s)


def client_on(budget: Recording, clock: FakeClock, **kwargs: Any) -> OneRosterClient:
    gate = Gate(budget, max_wait_s=5.0, stats=BudgetStats(), clock=clock, sleep=clock.sleep)
    return OneRosterClient(
        make_settings(), clock=clock, sleep=clock.sleep, rng=random.Random(1), gate=gate, **kwargs
    )


@pytest.fixture
def router() -> Any:
    with respx.mock(base_url="https://oneroster.test", assert_all_called=False) as mock:
        yield mock


def test_every_request_and_the_token_fetch_wait_for_admission(router: respx.MockRouter) -> None:
    clock, log = FakeClock(), []
    router.post("/oauth/token").mock(side_effect=lambda r: log.append("token") or token_response())
    router.get(COURSES_PATH).mock(side_effect=lambda r: log.append("send") or ok_courses())
    budget = Recording(BudgetPolicy(max_rps=2.0, burst=1.0), clock, log)
    client_on(budget, clock).list_courses()
    assert log == [
        ("admit", "event"),
        "token",
        ("release", "ok", 0),
        ("admit", "event"),
        "send",
        ("release", "ok", 0),
    ]
    assert clock.sleeps == [0.25, 0.25]  # the second request waited its turn: 2 a second


def test_a_429_pauses_every_client_sharing_the_budget(router: respx.MockRouter) -> None:
    clock, log = FakeClock(), []
    router.post("/oauth/token").mock(return_value=token_response())
    sent: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(clock.now)
        if len(sent) == 1:
            return httpx.Response(429, headers={"Retry-After": "3"})
        return ok_courses()

    router.get(COURSES_PATH).mock(side_effect=answer)
    budget = Recording(BudgetPolicy(max_rps=100.0, burst=10.0), clock, log)
    gate = Gate(budget, stats=BudgetStats(), clock=clock, sleep=clock.sleep)
    one_try = make_settings(oneroster_max_attempts=1)
    first = OneRosterClient(one_try, clock=clock, sleep=clock.sleep, gate=gate)
    other = OneRosterClient(make_settings(), clock=clock, sleep=clock.sleep, gate=gate)
    with pytest.raises(OneRosterUnavailable):
        first.list_courses()  # answered 429 Retry-After 3: the fleet pauses
    assert ("release", "throttled", 3.0) in log
    paused_at = clock.now
    other.list_courses()  # another process: its token fetch and request wait out the pause
    assert sent[1] >= paused_at + 3.0
    assert 3.0 <= sum(clock.sleeps) <= 3.2  # then at the cut rate (75/s), no burst


def test_the_request_class_comes_from_the_caller(router: respx.MockRouter) -> None:
    clock, log = FakeClock(), []
    router.post("/oauth/token").mock(return_value=token_response())
    router.get(COURSES_PATH).mock(return_value=ok_courses())
    budget = Recording(BudgetPolicy(max_rps=100.0, burst=10.0), clock, log)
    client = client_on(budget, clock, request_class="interactive")
    client.list_courses()
    with request_class("background"):
        client.list_courses()
    admitted = [entry[1] for entry in log if entry[0] == "admit"]
    assert admitted == ["interactive", "interactive", "background"]


def test_no_admission_in_time_raises_throttled_and_sends_nothing(
    router: respx.MockRouter,
) -> None:
    clock, log = FakeClock(), []
    tokens = router.post("/oauth/token").mock(return_value=token_response())
    budget = Recording(BudgetPolicy(max_rps=100.0, burst=10.0), clock, log)
    budget.release("someone", "throttled", 60.0)  # another process saw Retry-After: 60
    with pytest.raises(OneRosterThrottled) as caught:
        client_on(budget, clock).list_courses()
    assert tokens.call_count == 0
    assert caught.value.retryable and caught.value.retry_after_s > 0
    assert sum(clock.sleeps) == pytest.approx(5.0)  # the admission wait, not the 60 s


def test_the_async_client_waits_for_admission_too(router: respx.MockRouter) -> None:
    clock, log = FakeClock(), []
    router.post("/oauth/token").mock(side_effect=lambda r: log.append("token") or token_response())
    router.get(COURSES_PATH).mock(side_effect=lambda r: log.append("send") or ok_courses())
    budget = Recording(BudgetPolicy(max_rps=2.0, burst=1.0), clock, log)
    gate = Gate(budget, stats=BudgetStats(), clock=clock, sleep=clock.sleep)

    async def run() -> None:
        async with AsyncOneRosterClient(
            make_settings(), clock=clock, sleep=clock.asleep, gate=gate
        ) as client:
            await client.list_courses()

    asyncio.run(run())
    assert [e for e in log if e in ("token", "send") or e[0] == "admit"] == [
        ("admit", "event"),
        "token",
        ("admit", "event"),
        "send",
    ]
    assert clock.sleeps == [0.25, 0.25]
