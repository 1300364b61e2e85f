"""Fixtures: a small seeded catalog and an in-process client of the simulator app."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

with warnings.catch_warnings():  # starlette asks for httpx2 here; httpx is what we have
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from worker.simulator.app import SimulatorState, create_app
from worker.simulator.catalog import Catalog, CatalogConfig, generate_catalog

# Small enough to generate in a few milliseconds, big enough to hold every planted anomaly.
SMALL = CatalogConfig(courses=5, units=(3, 4), lessons=(2, 4), resources=(3, 8), quizzes=(1, 2))

ROSTERING = "/ims/oneroster/rostering/v1p2"
RESOURCES = "/ims/oneroster/resources/v1p2"
GRADEBOOK = "/ims/oneroster/gradebook/v1p2"


class Clock:
    """A hand-driven clock for token expiry and fault timers."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def catalog() -> Catalog:
    return generate_catalog(SMALL)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_client(catalog: Catalog, clock: Clock) -> Iterator[Callable[..., TestClient]]:
    """Build a client over a fresh app with the given options (unauthenticated)."""
    clients: list[TestClient] = []

    def make(**options: Any) -> TestClient:
        options.setdefault("clock", clock)
        client = TestClient(create_app(catalog, **options))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def get_token(client: TestClient) -> str:
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "demo-client",
            "client_secret": "demo-secret",
        },
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def authed(client: TestClient) -> TestClient:
    """Give the client a Bearer token on every request."""
    client.headers["Authorization"] = f"Bearer {get_token(client)}"
    return client


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """An authenticated client over the small catalog with default options."""
    return authed(make_client())


def sim_state(client: TestClient) -> SimulatorState:
    state: SimulatorState = client.app.state.sim  # type: ignore[attr-defined]
    return state
