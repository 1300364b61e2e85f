"""POST /v1/events: 202 once on the broker, 422 naming bad events, 503 when the broker refuses."""

from __future__ import annotations

from typing import Any

import orjson

from tests.worker.api.conftest import EVENTS, Api, MakeApi


def event(event_id: str = "evt-1", **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": "course-builder",
        "type": "oneroster.courseComponent.updated",
        "subject": "comp-7",
        "data": {"courseId": "course-42"},
    }
    doc.update(changes)
    return doc


def post(api: Api, body: Any, content_type: str = "application/json") -> Any:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return api.client.post(
        "/v1/events", content=raw, headers={**EVENTS, "Content-Type": content_type}
    )


def test_one_event_is_accepted_once(api: Api) -> None:
    first = post(api, event(), "application/cloudevents+json")
    assert first.status_code == 202
    assert first.json() == {"accepted": 1, "duplicates": 0}
    again = post(api, event())
    assert again.json() == {"accepted": 0, "duplicates": 1}
    assert [e["id"] for e in api.sender.sent] == ["evt-1"]


def test_a_batch_is_accepted_whole(api: Api) -> None:
    resp = post(api, [event("a"), event("b"), event("a")], "application/cloudevents-batch+json")
    assert resp.status_code == 202
    assert resp.json() == {"accepted": 2, "duplicates": 1}


def test_a_bad_event_rejects_the_batch_naming_it(api: Api) -> None:
    bad = event("b", specversion="0.3")
    resp = post(api, [event("a"), bad, event("c", type="nope")])
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    errors = resp.json()["errors"]
    assert [e["index"] for e in errors] == [1, 2]
    assert all(e["reasons"] for e in errors)
    assert api.sender.sent == []


def test_one_bad_event_is_422_at_index_0(api: Api) -> None:
    resp = post(api, event(id="has spaces"))
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["index"] == 0


def test_not_json_is_422(api: Api) -> None:
    assert post(api, b"{nope").status_code == 422


def test_an_event_over_64_kib_is_invalid(api: Api) -> None:
    huge = event(data={"courseId": "course-42", "pad": "x" * 70_000})
    resp = post(api, huge)
    assert resp.status_code == 422


def test_unsupported_media_type_is_415(api: Api) -> None:
    resp = post(api, event(), "text/plain")
    assert resp.status_code == 415
    assert api.sender.sent == []


def test_broker_down_is_503_and_the_retry_is_not_a_duplicate(api: Api) -> None:
    api.sender.down = True
    refused = post(api, event())
    assert refused.status_code == 503
    assert refused.headers["retry-after"]
    api.sender.down = False
    retried = post(api, event())
    assert retried.json() == {"accepted": 1, "duplicates": 0}


def test_body_limit_is_the_configured_one(make_api: MakeApi) -> None:
    api = make_api(api_max_body_bytes=200)
    assert post(api, [event("a"), event("b")]).status_code == 413


def test_a_token_past_its_event_rate_gets_429_and_nothing_more_is_queued(
    make_api: MakeApi,
) -> None:
    api = make_api(events_rate_per_token=0.01, events_burst_per_token=3)
    assert post(api, [event("a"), event("b"), event("c")]).status_code == 202  # costs 3

    refused = post(api, event("d"))
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "urn:course-bundles:problem:rate-limited"
    assert [e["id"] for e in api.sender.sent] == ["a", "b", "c"]

    other = api.client.post(
        "/v1/events",
        content=orjson.dumps(event("d")),
        headers={"Authorization": "Bearer all-token", "Content-Type": "application/json"},
    )
    assert other.status_code == 202  # the limit is per token
    assert post(api, event("d")).status_code == 429  # not spent by the other token's success
