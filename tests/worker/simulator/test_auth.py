"""OAuth client credentials and the Bearer check on every read."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from .conftest import ROSTERING, Clock, TestClient, authed, get_token

COURSES = f"{ROSTERING}/courses"
FORM = {
    "grant_type": "client_credentials",
    "client_id": "demo-client",
    "client_secret": "demo-secret",
}


def test_token_from_form_credentials(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    response = client.post("/oauth/token", data={**FORM, "scope": "roster-core.readonly"})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "roster-core.readonly"
    assert body["access_token"]
    read = client.get(COURSES, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert read.status_code == 200


def test_token_from_http_basic(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    basic = base64.b64encode(b"demo-client:demo-secret").decode()
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200
    assert response.json()["access_token"]


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({**FORM, "client_secret": "wrong"}, 401, "invalid_client"),
        ({**FORM, "client_id": "someone"}, 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, 401, "invalid_client"),
        ({**FORM, "grant_type": "password"}, 400, "unsupported_grant_type"),
    ],
)
def test_token_refusals(
    make_client: Callable[..., TestClient], form: dict[str, str], status: int, error: str
) -> None:
    response = make_client().post("/oauth/token", data=form)
    assert response.status_code == status
    assert response.json()["error"] == error


def test_token_ttl_is_configurable(make_client: Callable[..., TestClient]) -> None:
    response = make_client(token_ttl_s=120).post("/oauth/token", data=FORM)
    assert response.json()["expires_in"] == 120


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Basic abc"},
        {"Authorization": ""},
    ],
)
def test_reads_without_a_valid_token_answer_401(
    make_client: Callable[..., TestClient], headers: dict[str, str]
) -> None:
    response = make_client().get(COURSES, headers=headers)
    assert response.status_code == 401
    assert (
        response.json()["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"]
        == "unauthorisedrequest"
    )


def test_expired_token_answers_401_and_a_fresh_one_works(
    make_client: Callable[..., TestClient], clock: Clock
) -> None:
    client = make_client(token_ttl_s=60)
    token = get_token(client)
    headers = {"Authorization": f"Bearer {token}"}
    clock.advance(59)
    assert client.get(COURSES, headers=headers).status_code == 200
    clock.advance(1)
    assert client.get(COURSES, headers=headers).status_code == 401
    fresh = {"Authorization": f"Bearer {get_token(client)}"}
    assert client.get(COURSES, headers=fresh).status_code == 200


def test_revoked_tokens_answer_401(make_client: Callable[..., TestClient]) -> None:
    client = authed(make_client())
    assert client.post("/_sim/tokens/revoke").json() == {"revoked": 1}
    assert client.get(COURSES).status_code == 401


def test_auth_can_be_switched_off(make_client: Callable[..., TestClient]) -> None:
    assert make_client(require_auth=False).get(COURSES).status_code == 200
