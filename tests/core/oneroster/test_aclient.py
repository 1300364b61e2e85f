"""The async shell drives the same protocol: token single-flight, retries, 401, paging."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from core.errors import InvalidFilterValue, OneRosterAuthError, OneRosterNotFound
from core.oneroster.protocol import COURSES
from tests.core.oneroster.conftest import make_async_client
from tests.core.oneroster.fakes import FakeClock, FakeOneRoster


def _courses(fake: FakeOneRoster, count: int) -> None:
    for n in range(count):
        fake.add(COURSES.path, sourcedId=f"c{n:02d}", status="tobedeleted" if n == 3 else "active")


def test_twenty_coroutines_share_one_token_fetch(fake: FakeOneRoster, clock: FakeClock) -> None:
    _courses(fake, 2)
    fake.token_delay = 0.05

    async def run() -> list[int]:
        async with make_async_client(fake, clock) as aclient:
            pages = await asyncio.gather(*(aclient.list_courses() for _ in range(20)))
            assert (aclient.token_fetches, aclient.requests_made) == (1, 20)
            return [len(p) for p in pages]

    assert asyncio.run(run()) == [2] * 20
    assert fake.token_requests == 1


def test_async_paging_drops_deleted_records(fake: FakeOneRoster, clock: FakeClock) -> None:
    _courses(fake, 7)
    fake.cap = 2

    async def run() -> list[str]:
        async with make_async_client(fake, clock, oneroster_page_size=3) as aclient:
            return [c.sourcedId for c in await aclient.list_courses()]

    assert asyncio.run(run()) == ["c00", "c01", "c02", "c04", "c05", "c06"]
    assert [r.url.params["offset"] for r in fake.api_requests()] == ["0", "2", "4", "6"]


def test_async_retry_and_401_refresh(clock: FakeClock) -> None:
    answers = iter(
        [
            httpx.Response(503, headers={"Retry-After": "2"}),
            httpx.Response(401),
            httpx.Response(200, json={"courses": [{"sourcedId": "c1"}]}),
        ]
    )
    tokens: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            tokens.append(f"tok-{len(tokens) + 1}")
            return httpx.Response(200, json={"access_token": tokens[-1], "expires_in": 30})
        return next(answers)

    async def run() -> int:
        fake = FakeOneRoster()
        aclient = make_async_client(fake, clock)
        aclient._http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with aclient:
            got = await aclient.list_courses()
            await aclient._http.aclose()
            return len(got)

    assert asyncio.run(run()) == 1
    assert tokens == ["tok-1", "tok-2"]
    assert clock.sleeps == [2.0]


def test_async_second_401_and_not_found(clock: FakeClock) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t"})
        if request.url.path.endswith("/courses/c1"):
            return httpx.Response(404)
        return httpx.Response(401)

    async def run() -> None:
        aclient = make_async_client(FakeOneRoster(), clock)
        aclient._http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        with pytest.raises(OneRosterAuthError):
            await aclient.list_courses()
        with pytest.raises(OneRosterNotFound):
            await aclient.get_course("c1")
        with pytest.raises(InvalidFilterValue):
            await aclient.list_resources("sourcedId='a b'")
        await aclient._http.aclose()

    asyncio.run(run())
