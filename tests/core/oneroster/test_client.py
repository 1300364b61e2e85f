from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx
from freezegun import freeze_time

from core.errors import (
    InvalidFilterValue,
    OneRosterAuthError,
    OneRosterHTTPError,
    OneRosterNotFound,
    OneRosterProtocolError,
    OneRosterThrottled,
    OneRosterUnavailable,
)
from core.oneroster import protocol
from core.oneroster.client import OneRosterClient
from core.oneroster.protocol import COURSES
from tests.core.oneroster.fakes import (
    SECRET,
    FakeClock,
    Signal,
    page_response,
    token_response,
)

MakeClient = Callable[..., OneRosterClient]
COURSES_PATH = COURSES.path


def course(n: int, status: str = "active") -> dict[str, Any]:
    return {"sourcedId": f"c{n:02d}", "status": status, "title": f"Course {n}", "metadata": None}


def ok_courses(*records: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"courses": list(records)}, headers={"X-Total-Count": "1"})


@pytest.fixture
def token_route(router: respx.MockRouter) -> respx.Route:
    return router.post("/oauth/token").mock(return_value=token_response("tok-1"))


# --- tokens ----------------------------------------------------------------------------------
def test_token_is_fetched_once_and_reused(
    router: respx.MockRouter, token_route: respx.Route, make_client: MakeClient
) -> None:
    route = router.get(COURSES_PATH).mock(return_value=ok_courses(course(1)))
    client = make_client()
    client.list_courses()
    client.list_courses()
    assert token_route.call_count == 1
    assert (client.token_fetches, client.requests_made) == (1, 2)
    assert route.calls.last.request.headers["authorization"] == "Bearer tok-1"
    form = urllib.parse.parse_qs(token_route.calls.last.request.content.decode())
    assert form == {
        "grant_type": ["client_credentials"],
        "client_id": ["client-1"],
        "client_secret": [SECRET],
    }


@pytest.mark.parametrize(("lifetime", "fresh_for"), [(3600, 3540.0), (30, 27.0), (None, 3540.0)])
def test_token_is_refreshed_before_it_expires(
    router: respx.MockRouter,
    make_client: MakeClient,
    clock: FakeClock,
    lifetime: float | None,
    fresh_for: float,
) -> None:
    tokens = router.post("/oauth/token").mock(
        side_effect=[token_response("tok-1", lifetime), token_response("tok-2", lifetime)]
    )
    route = router.get(COURSES_PATH).mock(return_value=ok_courses(course(1)))
    client = make_client()
    client.list_courses()
    clock.advance(fresh_for - 0.5)
    client.list_courses()
    assert tokens.call_count == 1
    clock.advance(0.5)
    client.list_courses()
    assert tokens.call_count == 2
    assert route.calls.last.request.headers["authorization"] == "Bearer tok-2"


def test_401_fetches_a_new_token_once_and_retries(
    router: respx.MockRouter, make_client: MakeClient
) -> None:
    tokens = router.post("/oauth/token").mock(
        side_effect=[token_response("tok-1"), token_response("tok-2")]
    )
    route = router.get(COURSES_PATH).mock(side_effect=[httpx.Response(401), ok_courses(course(1))])
    client = make_client()
    assert [c.sourcedId for c in client.list_courses()] == ["c01"]
    assert tokens.call_count == 2
    assert [c.request.headers["authorization"] for c in route.calls] == [
        "Bearer tok-1",
        "Bearer tok-2",
    ]


def test_a_second_401_is_an_auth_error(
    router: respx.MockRouter, token_route: respx.Route, make_client: MakeClient
) -> None:
    route = router.get(COURSES_PATH).mock(
        return_value=httpx.Response(401, json={"imsx_description": "token revoked"})
    )
    client = make_client()
    with pytest.raises(OneRosterAuthError) as info:
        client.list_courses()
    assert (token_route.call_count, route.call_count) == (2, 2)
    assert info.value.context["description"] == "token revoked"


@pytest.mark.parametrize("status", [400, 401, 403])
def test_refused_credentials_are_an_auth_error(
    router: respx.MockRouter, make_client: MakeClient, status: int
) -> None:
    tokens = router.post("/oauth/token").mock(
        return_value=httpx.Response(status, json={"error": "invalid_client"})
    )
    route = router.get(COURSES_PATH)
    with pytest.raises(OneRosterAuthError):
        make_client().list_courses()
    assert (tokens.call_count, route.call_count) == (1, 0)


def test_token_endpoint_outage_is_retried(
    router: respx.MockRouter, make_client: MakeClient, clock: FakeClock
) -> None:
    tokens = router.post("/oauth/token").mock(
        side_effect=[httpx.Response(503), httpx.ConnectError("down"), token_response()]
    )
    router.get(COURSES_PATH).mock(return_value=ok_courses(course(1)))
    assert len(make_client().list_courses()) == 1
    assert tokens.call_count == 3
    assert len(clock.sleeps) == 2


def test_a_token_answer_without_access_token_is_an_auth_error(
    router: respx.MockRouter, make_client: MakeClient
) -> None:
    router.post("/oauth/token").mock(return_value=httpx.Response(200, json={"token": "x"}))
    with pytest.raises(OneRosterAuthError):
        make_client().list_courses()


def test_twenty_threads_share_one_token_fetch(
    router: respx.MockRouter, make_client: MakeClient
) -> None:
    def slow_token(request: httpx.Request) -> httpx.Response:
        time.sleep(0.2)  # long enough for every thread to ask while the fetch is in flight
        return token_response()

    tokens = router.post("/oauth/token").mock(side_effect=slow_token)
    router.get(COURSES_PATH).mock(return_value=ok_courses(course(1)))
    client = make_client()
    barrier = threading.Barrier(20)
    results: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            results.append(len(client.list_courses()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert errors == []
    assert results == [1] * 20
    assert tokens.call_count == 1
    assert client.requests_made == 20


class RecordingLogger:
    """Stands in for the module logger (immune to structlog's logger caching)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        def record(event: str, **fields: Any) -> None:
            self.entries.append({"event": event, "level": level, **fields})

        return record


def test_secrets_never_reach_the_logs(
    router: respx.MockRouter, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    router.post("/oauth/token").mock(return_value=token_response("tok-very-secret"))
    router.get(COURSES_PATH).mock(
        side_effect=[httpx.Response(503), httpx.Response(401), ok_courses(course(1))]
    )
    recorder = RecordingLogger()
    monkeypatch.setattr(protocol, "log", recorder)
    make_client().list_courses()
    logs = recorder.entries
    assert any(entry["event"] == "oneroster.token_fetched" for entry in logs)
    assert any(entry["event"] == "oneroster.retry" for entry in logs)
    text = repr(logs)
    assert "tok-very-secret" not in text
    assert SECRET not in text


# --- paging ----------------------------------------------------------------------------------
def _serve(records: list[dict[str, Any]], signal: Signal, cap: int | None) -> Any:
    return lambda request: page_response(records, "courses", request, signal=signal, cap=cap)


@pytest.mark.parametrize(
    ("signal", "cap", "total", "offsets"),
    [
        ("header", None, 7, [0, 3, 6]),
        ("link", None, 7, [0, 3, 6]),
        ("body", None, 7, [0, 3, 6]),
        ("none", None, 7, [0, 3, 6]),
        ("none", None, 6, [0, 3, 6]),
        ("header", 2, 7, [0, 2, 4, 6]),
        ("link", 2, 7, [0, 2, 4, 6]),
        ("body", 2, 7, [0, 2, 4, 6]),
        ("header", None, 6, [0, 3]),
        ("header", None, 0, [0]),
        ("link", None, 0, [0]),
        ("body", None, 0, [0]),
        ("none", None, 0, [0]),
    ],
)
def test_paging_reads_every_record_with_every_total_signal(
    router: respx.MockRouter,
    token_route: respx.Route,
    make_client: MakeClient,
    signal: Signal,
    cap: int | None,
    total: int,
    offsets: list[int],
) -> None:
    records = [course(n) for n in range(total)]
    route = router.get(COURSES_PATH).mock(side_effect=_serve(records, signal, cap))
    got = make_client(oneroster_page_size=3).list_courses()
    assert [c.sourcedId for c in got] == [r["sourcedId"] for r in records]
    params = [call.request.url.params for call in route.calls]
    assert [int(p["offset"]) for p in params] == offsets
    assert all(p["limit"] == "3" and p["sort"] == "sourcedId" for p in params)


def test_deleted_records_are_dropped_but_still_counted_for_paging(
    router: respx.MockRouter, token_route: respx.Route, make_client: MakeClient
) -> None:
    records = [course(0), course(1, "tobedeleted"), course(2, "inactive"), course(3), course(4)]
    route = router.get(COURSES_PATH).mock(side_effect=_serve(records, "none", None))
    got = make_client(oneroster_page_size=3).list_courses()
    assert [c.sourcedId for c in got] == ["c00", "c03", "c04"]
    assert route.call_count == 2


def test_filter_is_sent_url_encoded(
    router: respx.MockRouter, token_route: respx.Route, make_client: MakeClient
) -> None:
    route = router.get(COURSES_PATH).mock(return_value=ok_courses(course(1)))
    make_client().list_courses("metadata.khanSlug='algebra-1' AND courseCode!='x'")
    request = route.calls.last.request
    assert request.url.params["filter"] == "metadata.khanSlug='algebra-1' AND courseCode!='x'"
    assert b"'" not in request.url.query and b" " not in request.url.query


@pytest.mark.parametrize(
    "bad",
    [
        "metadata.khanSlug='x' OR status='tobedeleted",
        "title='two words'",
        "a='1' AND b='2' AND c='3'",
        "sourcedId=='x'",
        "sourcedId='é'",
        "",
    ],
)
def test_a_refused_filter_sends_nothing(
    router: respx.MockRouter, token_route: respx.Route, make_client: MakeClient, bad: str
) -> None:
    client = make_client()
    with pytest.raises(InvalidFilterValue):
        client.list_courses(bad)
    with pytest.raises(InvalidFilterValue):
        client.get_course("x' OR 'a")
    assert len(router.calls) == 0
    assert (client.requests_made, client.token_fetches) == (0, 0)


def test_missing_collection_key_is_a_protocol_error(
    router: respx.MockRouter, token_route: respx.Route, make_client: MakeClient
) -> None:
    router.get(COURSES_PATH).mock(return_value=httpx.Response(200, json={"items": []}))
    with pytest.raises(OneRosterProtocolError):
        make_client().list_courses()


def test_non_json_body_is_a_protocol_error(
    router: respx.MockRouter, token_route: respx.Route, make_client: MakeClient
) -> None:
    router.get(COURSES_PATH).mock(return_value=httpx.Response(200, text="<html>oops</html>"))
    with pytest.raises(OneRosterProtocolError):
        make_client().list_courses()


# --- single records --------------------------------------------------------------------------
def test_get_course_reads_the_single_record_key(
    router: respx.MockRouter, token_route: respx.Route, make_client: MakeClient
) -> None:
    router.get(f"{COURSES_PATH}/c01").mock(
        return_value=httpx.Response(200, json={"course": course(1, "tobedeleted")})
    )
    got = make_client().get_course("c01")
    assert (got.sourcedId, got.is_active) == ("c01", False)


def test_get_course_404_is_not_found(
    router: respx.MockRouter, token_route: respx.Route, make_client: MakeClient
) -> None:
    route = router.get(f"{COURSES_PATH}/nope").mock(
        return_value=httpx.Response(404, json={"imsx_codeMajor": "failure"})
    )
    with pytest.raises(OneRosterNotFound):
        make_client().get_course("nope")
    assert route.call_count == 1


# --- retries ---------------------------------------------------------------------------------
def test_5xx_and_transport_errors_are_retried_with_backoff(
    router: respx.MockRouter, token_route: respx.Route, make_client: MakeClient, clock: FakeClock
) -> None:
    route = router.get(COURSES_PATH).mock(
        side_effect=[httpx.Response(502), httpx.ReadTimeout("slow"), ok_courses(course(1))]
    )
    client = make_client()
    assert len(client.list_courses()) == 1
    assert route.call_count == 3 == client.requests_made
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 0.2 and 0 <= clock.sleeps[1] <= 0.4


def test_retry_after_seconds_is_honoured(
    router: respx.MockRouter, token_route: respx.Route, make_client: MakeClient, clock: FakeClock
) -> None:
    router.get(COURSES_PATH).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "3"}), ok_courses(course(1))]
    )
    make_client().list_courses()
    assert clock.sleeps == [3.0]


def test_retry_after_past_the_admission_wait_is_not_slept_through(
    router: respx.MockRouter, token_route: respx.Route, make_client: MakeClient, clock: FakeClock
) -> None:
    # Issue 19: a worker never sleeps through a long Retry-After; the caller is told when to
    # come back (a rebuild waits in the durable schedule instead).
    route = router.get(COURSES_PATH).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "7"}), ok_courses(course(1))]
    )
    with pytest.raises(OneRosterThrottled) as caught:
        make_client().list_courses()
    assert caught.value.retry_after_s == 7.0
    assert caught.value.retryable
    assert clock.sleeps == []
    assert route.call_count == 1


def test_retry_after_http_date_is_honoured(
    router: respx.MockRouter, token_route: respx.Route, make_client: MakeClient, clock: FakeClock
) -> None:
    router.get(COURSES_PATH).mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "Wed, 01 May 2024 12:00:04 GMT"}),
            ok_courses(course(1)),
        ]
    )
    with freeze_time("2024-05-01 12:00:00"):
        make_client().list_courses()
    assert clock.sleeps == [4.0]


def test_retries_never_sleep_past_the_deadline(
    router: respx.MockRouter, token_route: respx.Route, make_client: MakeClient, clock: FakeClock
) -> None:
    route = router.get(COURSES_PATH).mock(
        return_value=httpx.Response(503, headers={"Retry-After": "6"})
    )
    with pytest.raises(OneRosterUnavailable) as info:
        make_client(
            oneroster_deadline_s=10.0,
            oneroster_max_attempts=10,
            oneroster_budget_max_wait_s=30.0,  # above the Retry-After: the deadline decides
        ).list_courses()
    assert clock.sleeps == [6.0]  # a second 6 s wait would end past the 10 s deadline
    assert route.call_count == 2
    assert info.value.context["attempts"] == 2


def test_retries_stop_after_max_attempts(
    router: respx.MockRouter, token_route: respx.Route, make_client: MakeClient, clock: FakeClock
) -> None:
    route = router.get(COURSES_PATH).mock(return_value=httpx.Response(500))
    with pytest.raises(OneRosterUnavailable):
        make_client(oneroster_max_attempts=4, oneroster_deadline_s=1000.0).list_courses()
    assert route.call_count == 4
    assert len(clock.sleeps) == 3


@pytest.mark.parametrize("status", [400, 403, 409, 422])
def test_other_4xx_fail_at_once_with_the_imsx_description(
    router: respx.MockRouter,
    token_route: respx.Route,
    make_client: MakeClient,
    clock: FakeClock,
    status: int,
) -> None:
    route = router.get(COURSES_PATH).mock(
        return_value=httpx.Response(
            status,
            json={"imsx_codeMajor": "failure", "imsx_description": "invalid filter"},
        )
    )
    with pytest.raises(OneRosterHTTPError) as info:
        make_client().list_courses()
    assert not isinstance(info.value, OneRosterNotFound)
    assert info.value.status == status
    assert info.value.context["description"] == "invalid filter"
    assert route.call_count == 1
    assert clock.sleeps == []


def test_every_request_carries_a_timeout(
    router: respx.MockRouter, token_route: respx.Route, make_client: MakeClient
) -> None:
    route = router.get(COURSES_PATH).mock(return_value=ok_courses(course(1)))
    make_client(oneroster_timeout_s=2.5).list_courses()
    for call in (route.calls.last, token_route.calls.last):
        assert call.request.extensions["timeout"]["read"] == 2.5


def test_context_manager_closes_its_own_http_client() -> None:
    with OneRosterClient() as client:
        http = client._http
    assert http.is_closed
