"""Tokens a hostile token endpoint hands out: zero lifetimes, malformed or huge tokens."""

from __future__ import annotations

import httpx
import pytest

from core.errors import OneRosterAuthError
from tests.core.oneroster.fakes import FakeClock, token_response
from tests.core.oneroster.hostile import KINDS, Kind, Upstream, course, run_list


def _courses(_r: httpx.Request, _n: int) -> httpx.Response:
    return httpx.Response(200, json={"courses": [course("c1")]}, headers={"X-Total-Count": "1"})


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("expires_in", [0, -10, 0.5])
def test_a_token_answered_with_no_lifetime_is_still_reused(
    kind: Kind, expires_in: float, clock: FakeClock
) -> None:
    def slow_courses(request: httpx.Request, n: int) -> httpx.Response:
        clock.advance(1.0)  # each answer takes a second: a sub-second lifetime has run out
        return _courses(request, n)

    upstream = Upstream(slow_courses, token=lambda _r: token_response("tok-0000", expires_in))
    run_list(kind, upstream, clock, times=5)
    assert upstream.token_requests == 1
    assert len(upstream.api_requests()) == 5


@pytest.mark.parametrize("kind", KINDS)
def test_the_lifetime_floor_still_expires_the_token(kind: Kind, clock: FakeClock) -> None:
    upstream = Upstream(_courses, token=lambda _r: token_response("tok-0000", 0))
    run_list(kind, upstream, clock, oneroster_token_min_lifetime_s=30.0)
    clock.advance(31.0)
    run_list(kind, upstream, clock, oneroster_token_min_lifetime_s=30.0)
    assert upstream.token_requests == 2


BAD_TOKENS = {
    "space": "tok en-abcdefgh",
    "header injection": "tok-abcdefgh\r\nX-Injected: 1",
    "quote": 'tok-"abcdefgh"',
    "too long": "t" * 5000,
    "empty": "",
    "padding inside": "tok=abc-defgh",
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("token", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_a_token_that_is_not_a_bounded_token68_is_refused(
    kind: Kind, token: str, clock: FakeClock
) -> None:
    upstream = Upstream(_courses, token=lambda _r: token_response(token))
    with pytest.raises(OneRosterAuthError, match="unusable access_token") as caught:
        run_list(kind, upstream, clock, oneroster_max_token_chars=4096)
    assert upstream.api_requests() == []  # never sent anywhere
    if token:
        assert token not in str(caught.value)
        assert token not in repr(caught.value.__cause__)


@pytest.mark.parametrize("kind", KINDS)
def test_a_token_at_the_length_limit_is_used(kind: Kind, clock: FakeClock) -> None:
    token = "A" * 4094 + "=="
    upstream = Upstream(_courses, token=lambda _r: token_response(token))
    assert [c.sourcedId for c in run_list(kind, upstream, clock)] == ["c1"]
    assert upstream.api_requests()[0].headers["authorization"] == f"Bearer {token}"
