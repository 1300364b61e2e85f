"""Attempt routes: read, resolve (one number for concurrent callers), reset."""

from __future__ import annotations

import asyncio

import fakeredis
import httpx
import pytest

from tests.worker.api.conftest import ATTEMPTS, Api

BASE = "/v1/attempts/user-1/res-1"


def test_no_active_attempt_is_404(api: Api) -> None:
    resp = api.client.get(BASE, headers=ATTEMPTS)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"


def test_resolve_derives_then_points(api: Api) -> None:
    api.upstream.attempt_number = 3
    first = api.client.post(f"{BASE}/resolve", headers=ATTEMPTS)
    assert first.status_code == 200
    assert first.json() == {"attemptNumber": 3, "source": "derived", "created": True}
    again = api.client.post(f"{BASE}/resolve", headers=ATTEMPTS)
    assert again.json() == {"attemptNumber": 3, "source": "pointer", "created": False}
    active = api.client.get(BASE, headers=ATTEMPTS)
    assert active.json() == {"attemptNumber": 3, "source": "pointer"}
    assert active.headers["cache-control"] == "no-store"


def test_concurrent_resolves_agree_on_one_number(api: Api) -> None:
    app = api.client.app

    async def burst() -> list[dict[str, object]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            calls = [client.post(f"{BASE}/resolve", headers=ATTEMPTS) for _ in range(8)]
            return [r.json() for r in await asyncio.gather(*calls)]

    answers = asyncio.run(burst())
    assert {a["attemptNumber"] for a in answers} == {1}
    assert sum(1 for a in answers if a["created"]) == 1


def test_reset_clears_the_active_attempt(api: Api) -> None:
    api.client.post(f"{BASE}/resolve", headers=ATTEMPTS)
    resp = api.client.delete(f"{BASE}?attempt=1", headers=ATTEMPTS)
    assert resp.status_code == 200
    assert resp.json() == {"clearedAttempt": 1}
    assert api.client.get(BASE, headers=ATTEMPTS).status_code == 404
    assert api.client.delete(f"{BASE}?attempt=1", headers=ATTEMPTS).status_code == 404


def test_reset_of_another_attempt_is_409_naming_the_active_one(api: Api) -> None:
    api.upstream.attempt_number = 2
    api.client.post(f"{BASE}/resolve", headers=ATTEMPTS)
    resp = api.client.delete(f"{BASE}?attempt=1", headers=ATTEMPTS)
    assert resp.status_code == 409
    assert resp.json()["activeAttempt"] == 2
    assert api.client.get(BASE, headers=ATTEMPTS).json()["attemptNumber"] == 2


@pytest.mark.parametrize("query", ["", "?attempt=0", "?attempt=-1", "?attempt=x"])
def test_reset_needs_a_positive_attempt(api: Api, query: str) -> None:
    assert api.client.delete(f"{BASE}{query}", headers=ATTEMPTS).status_code == 422


@pytest.mark.parametrize("path", ["/v1/attempts/bad%20user/res-1", "/v1/attempts/u/r%2A"])
def test_ids_outside_the_allow_list_are_422(api: Api, path: str) -> None:
    assert api.client.get(path, headers=ATTEMPTS).status_code == 422


def test_resolve_while_oneroster_is_down_is_503(api: Api) -> None:
    api.upstream.down = True
    resp = api.client.post(f"{BASE}/resolve", headers=ATTEMPTS)
    assert resp.status_code == 503
    assert resp.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "path", ["/v1/attempts/a:b/c", "/v1/attempts/a/b:c", "/v1/attempts/a%3Ab/c"]
)
@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("POST", "/resolve"), ("DELETE", "?attempt=1")]
)
def test_attempt_ids_with_a_colon_are_422_and_touch_nothing(
    api: Api, path: str, method: str, suffix: str
) -> None:
    """User a:b on c and user a on b:c would share assess:active:a:b:c; both are refused."""
    resp = api.client.request(method, f"{path}{suffix}", headers=ATTEMPTS)
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    assert api.upstream.derive_calls == 0
    assert fakeredis.FakeRedis(server=api.server).keys("assess:*") == []
