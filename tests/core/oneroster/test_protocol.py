from __future__ import annotations

import datetime as dt
import random

import httpx
import pytest

from core.oneroster.protocol import (
    ImsxStatus,
    Outcome,
    PageCursor,
    RequestSpec,
    RetryPolicy,
    TokenCache,
    classify,
    fresh_until,
    link_rels,
    parse_imsx,
    parse_retry_after,
    refresh_margin,
)
from tests.core.oneroster.fakes import FakeClock

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


class Ceiling(random.Random):
    """Full jitter always drawing its upper bound, so the cap is visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


# --- tokens ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("lifetime", "margin"), [(3600, 60), (600, 60), (300, 30), (30, 3), (0, 0), (-5, 0)]
)
def test_refresh_margin_is_60s_or_a_tenth_of_the_lifetime(lifetime: float, margin: float) -> None:
    assert refresh_margin(lifetime) == margin


def test_a_30s_token_is_reused_for_27s() -> None:
    clock = FakeClock(start=0.0)
    cache = TokenCache(clock)
    cache.store("t", obtained_at=0.0, lifetime=30)
    clock.advance(26.9)
    assert cache.current() == "t"
    clock.advance(0.1)
    assert cache.current() is None
    assert fresh_until(0.0, 30) == 27.0


def test_invalidate_only_drops_the_refused_token() -> None:
    clock = FakeClock()
    cache = TokenCache(clock)
    cache.store("new", obtained_at=clock(), lifetime=3600)
    cache.invalidate("old")  # another caller already replaced the refused token
    assert cache.current() == "new"
    cache.invalidate("new")
    assert cache.current() is None


# --- retries ---------------------------------------------------------------------------------
def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(base_s=0.2, max_s=1.0)
    assert [policy.backoff(n, Ceiling()) for n in (1, 2, 3, 4, 5)] == [0.2, 0.4, 0.8, 1.0, 1.0]


def test_backoff_is_full_jitter() -> None:
    policy = RetryPolicy(base_s=1.0, max_s=8.0)
    rng = random.Random(1)
    draws = [policy.backoff(4, rng) for _ in range(200)]
    assert all(0 <= d <= 8.0 for d in draws)
    assert min(draws) < 1.0 < 7.0 < max(draws)


def test_next_delay_honours_retry_after_and_both_bounds() -> None:
    policy = RetryPolicy(max_attempts=3, deadline_s=10.0, base_s=0.2, max_s=5.0)
    rng = Ceiling()
    assert policy.next_delay(1, elapsed=0.0, retry_after=7.0, rng=rng) == 7.0
    assert policy.next_delay(1, elapsed=0.0, retry_after=None, rng=rng) == 0.2
    assert policy.next_delay(3, elapsed=0.0, retry_after=None, rng=rng) is None  # attempts
    assert policy.next_delay(1, elapsed=4.0, retry_after=6.0, rng=rng) is None  # deadline
    assert policy.next_delay(1, elapsed=9.9, retry_after=None, rng=rng) is None


def test_attempt_timeout_never_runs_past_the_deadline() -> None:
    policy = RetryPolicy(deadline_s=10.0, timeout_s=3.0)
    assert policy.timeout(0.0) == 3.0
    assert policy.timeout(8.5) == 1.5


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("Wed, 01 May 2024 12:00:05 GMT", 5.0),
        ("Wed, 01 May 2024 11:59:00 GMT", 0.0),
        ("-3", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds_or_http_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.OK),
        (204, Outcome.OK),
        (401, Outcome.AUTH),
        (404, Outcome.NOT_FOUND),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
        (400, Outcome.FAIL),
        (403, Outcome.FAIL),
        (422, Outcome.FAIL),
    ],
)
def test_classify(status: int, outcome: Outcome) -> None:
    assert classify(status) is outcome


# --- imsx ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"imsx_codeMajor":"failure","imsx_severity":"error",'
            b'"imsx_description":"bad filter","imsx_CodeMinor":"invalid_filter_field"}',
            ImsxStatus("failure", ("invalid_filter_field",), "bad filter"),
        ),
        (
            b'{"imsx_StatusInfo":{"imsx_codeMajor":"failure","imsx_description":"nope",'
            b'"imsx_CodeMinor":{"imsx_codeMinorField":[{"imsx_codeMinorFieldName":"TargetEndSystem",'
            b'"imsx_codeMinorFieldValue":"unknownobject"}]}}}',
            ImsxStatus("failure", ("unknownobject",), "nope"),
        ),
        (
            b'{"statusInfoSet":[{"imsx_codeMajor":"failure","imsx_description":"first"},'
            b'{"imsx_codeMajor":"failure","imsx_description":"second"}]}',
            ImsxStatus("failure", (), "first"),
        ),
        (
            b'{"error":"invalid_client","error_description":"unknown client"}',
            ImsxStatus(None, (), "unknown client"),
        ),
        (
            b"<imsx_StatusInfo><imsx_codeMajor>failure</imsx_codeMajor>"
            b"<imsx_description>server sad</imsx_description></imsx_StatusInfo>",
            ImsxStatus("failure", (), "server sad"),
        ),
        (b"Service Unavailable\n", ImsxStatus(None, (), "Service Unavailable")),
        (b'"just a string"', ImsxStatus(None, (), "just a string")),
        (b"", ImsxStatus()),
        (b"   ", ImsxStatus()),
        (b"[]", ImsxStatus()),
    ],
)
def test_imsx_parsing_is_lenient(body: bytes, expected: ImsxStatus) -> None:
    assert parse_imsx(body) == expected


def test_imsx_description_is_clipped() -> None:
    described = parse_imsx(b"x" * 10_000).description
    assert described is not None and len(described) <= 300


# --- paging ----------------------------------------------------------------------------------
def _advance(cursor: PageCursor, received: int, headers: dict[str, str] | None = None,
             body: object = None) -> PageCursor:  # fmt: skip
    cursor.advance(received, headers=httpx.Headers(headers or {}), body=body or {})
    return cursor


def test_total_header_decides_and_capped_pages_still_move_on() -> None:
    cursor = _advance(PageCursor(limit=100), 40, {"X-Total-Count": "90"})
    assert (cursor.offset, cursor.done) == (40, False)
    assert dict(cursor.params()) == {"limit": "100", "offset": "40"}
    cursor = _advance(cursor, 40, {"X-Total-Count": "90"})
    cursor = _advance(cursor, 10, {"X-Total-Count": "90"})
    assert (cursor.offset, cursor.done) == (90, True)


def test_body_total_count_decides() -> None:
    cursor = _advance(PageCursor(limit=10), 10, body={"totalCount": 10, "offset": 0, "limit": 10})
    assert cursor.done


def test_link_without_next_is_the_last_page() -> None:
    more = {"Link": '<https://x/a?offset=2>; rel="next", <https://x/a?offset=0>; rel="first"'}
    cursor = _advance(PageCursor(limit=5), 2, more)
    assert not cursor.done
    cursor = _advance(cursor, 2, {"Link": '<https://x/a?offset=0>; rel="first"'})
    assert cursor.done


def test_body_limit_reveals_a_cap_without_a_total() -> None:
    cursor = _advance(PageCursor(limit=1000), 100, body={"limit": 100})
    assert not cursor.done
    cursor = _advance(cursor, 99, body={"limit": 100})
    assert cursor.done


def test_without_any_signal_a_short_page_is_the_last() -> None:
    assert not _advance(PageCursor(limit=3), 3).done
    assert _advance(PageCursor(limit=3), 2).done


def test_an_empty_page_always_ends_paging() -> None:
    assert _advance(PageCursor(limit=3), 0, {"X-Total-Count": "50"}).done


@pytest.mark.parametrize(
    ("values", "rels"),
    [
        (['<https://x?a=1,2>; rel="next"'], {"next"}),
        (["<https://x>; rel=next", '<https://y>; rel="last"'], {"next", "last"}),
        (['<https://x>; title="a"; rel="next last"'], {"next", "last"}),
        (['<https://x>; rel="prev"'], {"prev"}),
    ],
)
def test_link_header_rels(values: list[str], rels: set[str]) -> None:
    headers = httpx.Headers([("link", v) for v in values])
    assert link_rels(headers) == rels


def test_no_link_header_is_not_an_empty_link_header() -> None:
    assert link_rels(httpx.Headers({})) is None


def test_request_repr_hides_token_and_secret() -> None:
    spec = RequestSpec("POST", "https://x/oauth/token", data=(("client_secret", "shh"),))
    text = repr(spec.with_bearer("tok-abc"))
    assert "shh" not in text and "tok-abc" not in text
    assert "/oauth/token" in text
