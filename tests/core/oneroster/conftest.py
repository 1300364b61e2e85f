from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx

from core.oneroster.aclient import AsyncOneRosterClient
from core.oneroster.client import OneRosterClient
from tests.core.oneroster.fakes import BASE, FakeClock, FakeOneRoster, make_settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def make_client(clock: FakeClock) -> Iterator[Callable[..., OneRosterClient]]:
    """A sync client on the fake clock (sleeping only advances it); respx answers its requests."""
    made: list[OneRosterClient] = []

    def make(*, http: httpx.Client | None = None, **overrides: Any) -> OneRosterClient:
        client = OneRosterClient(
            make_settings(**overrides),
            http=http,
            clock=clock,
            sleep=clock.sleep,
            rng=random.Random(7),
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def fake() -> FakeOneRoster:
    return FakeOneRoster()


@pytest.fixture
def fake_client(
    fake: FakeOneRoster, make_client: Callable[..., OneRosterClient]
) -> Callable[..., OneRosterClient]:
    """A sync client whose transport is the in-memory FakeOneRoster."""

    def make(**overrides: Any) -> OneRosterClient:
        return make_client(http=httpx.Client(transport=httpx.MockTransport(fake)), **overrides)

    return make


def make_async_client(
    fake: FakeOneRoster, clock: FakeClock, **overrides: Any
) -> AsyncOneRosterClient:
    return AsyncOneRosterClient(
        make_settings(**overrides),
        http=httpx.AsyncClient(transport=httpx.MockTransport(fake.handle_async)),
        clock=clock,
        sleep=clock.asleep,
        rng=random.Random(7),
    )
