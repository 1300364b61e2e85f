"""Every route under every token: none, unknown, wrong scope, right scope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.worker.api.conftest import TOKENS, Api, bearer

EVENT = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "course-builder",
    "type": "oneroster.course.updated",
    "subject": "course-1",
    "data": {"courseId": "course-1"},
}


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    path: str
    scope: str
    ok: int  # the answer with the right scope, given the state ``prepare`` leaves
    body: dict[str, Any] | None = None


ROUTES = [
    Route("GET", "/v1/courses/{courseId}/bundle", "/v1/courses/course-1/bundle", "read", 200),
    Route(
        "GET",
        "/v1/courses/by-slug/{courseSlug}/bundle",
        "/v1/courses/by-slug/algebra/bundle",
        "read",
        200,
    ),
    Route(
        "GET",
        "/v1/courses/{courseId}/units/{unitSlug}",
        "/v1/courses/course-1/units/u0",
        "read",
        200,
    ),
    Route(
        "GET",
        "/v1/courses/{courseId}/units/{unitSlug}/lessons/{lessonSlug}",
        "/v1/courses/course-1/units/u0/lessons/l0",
        "read",
        200,
    ),
    Route(
        "GET",
        "/v1/courses/{courseId}/resources/{resourceId}",
        "/v1/courses/course-1/resources/course-1-u0-l0-r0",
        "read",
        200,
    ),
    Route("GET", "/v1/subjects/{subject}/courses", "/v1/subjects/math/courses", "read", 200),
    Route(
        "GET",
        "/v1/redirects/assessment",
        "/v1/redirects/assessment?subject=math&course=algebra&unit=u0&kind=quiz&slug=quiz-1",
        "read",
        200,
    ),
    Route(
        "GET", "/v1/attempts/{userId}/{resourceId}", "/v1/attempts/user-1/res-1", "attempts", 200
    ),
    Route(
        "POST",
        "/v1/attempts/{userId}/{resourceId}/resolve",
        "/v1/attempts/user-2/res-1/resolve",
        "attempts",
        200,
    ),
    Route(
        "DELETE",
        "/v1/attempts/{userId}/{resourceId}",
        "/v1/attempts/user-1/res-1?attempt=1",
        "attempts",
        200,
    ),
    Route("POST", "/v1/events", "/v1/events", "events", 202, body=EVENT),
]
OPEN_ROUTES = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}

CASES = {
    "no token": None,
    "unknown token": bearer("not-a-token"),
    "wrong scope": "wrong",
    "right scope": "right",
}


def _token_for(scope: str, *, right: bool) -> dict[str, str]:
    for token, scopes in TOKENS.items():
        if (scope in scopes) == right and (not right or len(scopes) == 1):
            return bearer(token)
    raise AssertionError(scope)


def _prepare(api: Api) -> None:
    api.put()
    api.client.post("/v1/attempts/user-1/res-1/resolve", headers=bearer("attempts-token"))


def _call(api: Api, route: Route, headers: dict[str, str] | None) -> Any:
    kwargs: dict[str, Any] = {"headers": headers or {}}
    if route.body is not None:
        kwargs["json"] = route.body
    return api.client.request(route.method, route.path, **kwargs)


def test_the_matrix_covers_every_route(api: Api) -> None:
    documented = {
        (method.upper(), path)
        for path, operations in api.client.get("/openapi.json").json()["paths"].items()
        for method in operations
    }
    assert documented == {(r.method, r.template) for r in ROUTES} | OPEN_ROUTES


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.template}")
@pytest.mark.parametrize("case", list(CASES))
def test_auth(api: Api, route: Route, case: str) -> None:
    _prepare(api)
    given = CASES[case]
    if given == "wrong":
        headers: dict[str, str] | None = _token_for(route.scope, right=False)
    elif given == "right":
        headers = _token_for(route.scope, right=True)
    else:
        headers = given  # type: ignore[assignment]
    resp = _call(api, route, headers)
    if case in ("no token", "unknown token"):
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert resp.headers["content-type"] == "application/problem+json"
    elif case == "wrong scope":
        assert resp.status_code == 403
        assert resp.headers["content-type"] == "application/problem+json"
        assert route.scope in resp.json()["detail"]
    else:
        assert resp.status_code == route.ok, resp.text


@pytest.mark.parametrize("header", ["Bearer", "Basic read-token", "bearer  ", "read-token"])
def test_malformed_authorization_is_401(api: Api, header: str) -> None:
    resp = api.client.get("/v1/subjects/math/courses", headers={"Authorization": header})
    assert resp.status_code == 401


def test_scheme_name_is_case_insensitive(api: Api) -> None:
    resp = api.client.get(
        "/v1/subjects/math/courses", headers={"Authorization": "bEaReR read-token"}
    )
    assert resp.status_code == 200


def test_auth_is_checked_before_parameters(api: Api) -> None:
    resp = api.client.get("/v1/courses/bad%20id/bundle")
    assert resp.status_code == 401


def test_token_is_never_echoed(api: Api) -> None:
    secret = "very-secret-but-unknown-token"
    resp = api.client.get("/v1/subjects/math/courses", headers=bearer(secret))
    assert secret not in resp.text
    assert all(secret not in value for value in resp.headers.values())


def test_no_configured_tokens_refuses_everything_but_health(make_api: Any) -> None:
    api = make_api(api_tokens={})
    assert api.client.get("/v1/subjects/math/courses", headers=bearer("x")).status_code == 401
    assert api.client.get("/healthz").status_code == 200
    assert api.client.get("/readyz").status_code == 200


def test_openapi_names_the_scope_of_every_protected_operation(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for route in ROUTES:
        operation = doc["paths"][route.template][route.method.lower()]
        assert operation["security"] == [{"bearer": []}]
        assert f"`{route.scope}`" in operation["description"]
        assert {"401", "403"} <= set(operation["responses"])
    assert "security" not in doc["paths"]["/healthz"]["get"]


def test_refusals_are_counted_under_their_route(api: Api) -> None:
    api.client.get("/v1/courses/course-1/units/u0/lessons/l0")
    text = api.client.get("/metrics").text
    template = "/v1/courses/{courseId}/units/{unitSlug}/lessons/{lessonSlug}"
    assert f'route="{template}",status="401"' in text
