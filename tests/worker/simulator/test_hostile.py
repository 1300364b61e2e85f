"""The simulator's hostile-upstream modes: endless pages, huge and trickling bodies, echoes."""

from __future__ import annotations

import time

from .conftest import ROSTERING, TestClient
from .test_faults import TOKEN_FORM, set_faults

COURSES = f"{ROSTERING}/courses"


def test_endless_pages_ignore_offset_and_always_link_a_next_page(client: TestClient) -> None:
    set_faults(client, endless_pages=True)
    first = client.get(COURSES, params={"limit": 2, "offset": 0})
    later = client.get(COURSES, params={"limit": 2, "offset": 1000})
    assert first.json() == later.json()
    assert 'rel="next"' in later.headers["link"]
    assert "x-total-count" not in later.headers


def test_huge_body_streams_that_many_bytes(client: TestClient) -> None:
    set_faults(client, huge_body_bytes=300_000)
    response = client.get(COURSES)
    assert len(response.content) == 300_000
    assert response.content.startswith(b'{"courses":')


def test_slow_body_trickles(client: TestClient) -> None:
    set_faults(client, slow_body_bps=200.0, path_prefixes=[f"{COURSES}/"])
    one = client.get(COURSES, params={"limit": 1})
    course_id = one.json()["courses"][0]["sourcedId"]
    started = time.monotonic()
    response = client.get(f"{COURSES}/{course_id}")
    assert response.json()["course"]["sourcedId"] == course_id
    assert time.monotonic() - started >= len(response.content) / 200.0 * 0.9


def test_echo_quotes_the_credentials_sent(client: TestClient) -> None:
    set_faults(client, echo_request=True)
    token = client.post("/oauth/token", data=TOKEN_FORM)
    assert token.status_code == 401
    assert "client_secret=demo-secret" in token.json()["imsx_description"]
    read = client.get(COURSES, headers={"Authorization": "Bearer abc-123"})
    assert read.status_code == 400
    assert "Bearer abc-123" in read.json()["imsx_description"]
