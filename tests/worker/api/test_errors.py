"""Every error is problem+json with a request id: unknown routes, methods, bodies, crashes."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.worker.api.conftest import EVENTS, READ, Api, MakeApi


def _is_problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    assert body["requestId"] == resp.headers["x-request-id"]
    return body


@pytest.mark.parametrize("path", ["/nope", "/v1/nope", "/v1/courses/course-1"])
def test_unknown_route_is_404_problem(api: Api, path: str) -> None:
    _is_problem(api.client.get(path, headers=READ), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/courses/course-1/bundle"),
        ("PUT", "/v1/attempts/u/r"),
        ("GET", "/v1/events"),
        ("DELETE", "/healthz"),
    ],
)
def test_wrong_method_is_405_problem_with_allow(api: Api, method: str, path: str) -> None:
    resp = api.client.request(method, path, headers=READ)
    _is_problem(resp, 405)
    assert resp.headers["allow"]


def test_request_id_is_echoed_when_sane_and_made_otherwise(api: Api) -> None:
    given = api.client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = api.client.get("/healthz", headers={"X-Request-Id": "bad id\twith junk"})
    assert made.headers["x-request-id"] != "bad id\twith junk"
    other = api.client.get("/healthz")
    assert other.headers["x-request-id"] not in (made.headers["x-request-id"], "")


def test_unexpected_exception_is_500_problem_logged_without_leaking(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(course_id: str) -> None:
        raise ValueError("secret internals")

    monkeypatch.setattr(api.services.reader, "load", boom)
    with capture_logs() as logs:
        resp = api.client.get(
            "/v1/courses/course-1/bundle", headers={**READ, "X-Request-Id": "r-9"}
        )
    body = _is_problem(resp, 500)
    assert "secret internals" not in resp.text
    assert "Traceback" not in resp.text
    assert body["requestId"] == "r-9"
    crashed = [entry for entry in logs if entry["event"] == "unhandled error"]
    assert crashed and crashed[0]["log_level"] == "error"
    assert crashed[0]["exc_info"]


def test_oversize_body_is_413_before_reading_it(make_api: MakeApi) -> None:
    api = make_api(api_max_body_bytes=1024)
    resp = api.client.post(
        "/v1/events",
        content=b"[" + b" " * 2000 + b"]",
        headers={**EVENTS, "Content-Type": "application/json"},
    )
    _is_problem(resp, 413)
    assert api.sender.sent == []


def test_oversize_chunked_body_is_413(make_api: MakeApi) -> None:
    api = make_api(api_max_body_bytes=1024)

    def chunks() -> Any:
        for _ in range(10):
            yield b" " * 500

    resp = api.client.post(
        "/v1/events", content=chunks(), headers={**EVENTS, "Content-Type": "application/json"}
    )
    _is_problem(resp, 413)


def test_redis_down_is_503_problem(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    def down(course_id: str) -> None:
        raise redis.ConnectionError("connection refused")

    monkeypatch.setattr(api.services.reader, "load", down)
    resp = api.client.get("/v1/courses/course-1/bundle", headers=READ)
    _is_problem(resp, 503)
    assert resp.headers["retry-after"]


def test_validation_error_names_the_parameter(api: Api) -> None:
    resp = api.client.delete(
        "/v1/attempts/u/r?attempt=zero", headers={"Authorization": "Bearer all-token"}
    )
    body = _is_problem(resp, 422)
    assert body["errors"] == [
        {"in": "query", "name": "attempt", "reason": body["errors"][0]["reason"]}
    ]
