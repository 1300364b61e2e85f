"""/healthz, /readyz and /metrics."""

from __future__ import annotations

from tests.worker.api.conftest import READ, Api, MakeApi, bearer


def test_healthz_needs_nothing(api: Api) -> None:
    resp = api.client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_readyz_when_redis_and_broker_answer(api: Api) -> None:
    resp = api.client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ready", "checks": {"redis": "ok", "broker": "ok"}}


def test_readyz_names_the_dependency_that_failed(make_api: MakeApi) -> None:
    api = make_api(broker_url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    resp = api.client.get("/readyz")
    assert resp.status_code == 503
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["checks"] == {"redis": "ok", "broker": "unavailable"}


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()) and (labels or head == name):
            return float(value)
    return 0.0


def test_metrics_count_requests_cache_hits_and_bytes(api: Api) -> None:
    api.put()
    lesson = "/v1/courses/course-1/units/u0/lessons/l0"
    first = api.client.get(lesson, headers=READ)
    for _ in range(3):
        api.client.get(lesson, headers=READ)
    api.client.get("/v1/courses/course-1/units/u0/lessons/nope", headers=READ)
    text = api.client.get("/metrics").text
    template = "/v1/courses/{courseId}/units/{unitSlug}/lessons/{lessonSlug}"
    assert _sample(text, "cb_api_requests_total", route=template, status="200") == 4
    assert _sample(text, "cb_api_requests_total", route=template, status="404") == 1
    assert _sample(text, "cb_api_request_duration_seconds_count", route=template) == 5
    assert _sample(text, "cb_api_near_cache_hits_total") >= 3
    assert _sample(text, "cb_api_near_cache_misses_total") == 1
    served = _sample(text, "cb_api_bundle_bytes_served_total", part="lesson", encoding="identity")
    assert served == 4 * len(first.content)
    assert "cb_singleflight_flights_led_total" in text


def test_metrics_count_stale_answers(api: Api) -> None:
    import datetime as dt

    api.put(built_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=3))
    api.upstream.down = True
    api.client.get("/v1/courses/course-1/bundle", headers=READ)
    text = api.client.get("/metrics").text
    assert _sample(text, "cb_api_stale_responses_total") == 1


def test_unknown_routes_are_counted_without_their_path(api: Api) -> None:
    api.client.get("/no/such/thing-123")
    text = api.client.get("/metrics").text
    assert _sample(text, "cb_api_requests_total", route="unmatched", status="404") == 1
    assert "thing-123" not in text


def test_metrics_token_when_configured(make_api: MakeApi) -> None:
    api = make_api(api_metrics_token="scrape-me")
    assert api.client.get("/metrics").status_code == 401
    assert api.client.get("/metrics", headers=bearer("wrong")).status_code == 401
    assert api.client.get("/metrics", headers=bearer("read-token")).status_code == 401
    assert api.client.get("/metrics", headers=bearer("scrape-me")).status_code == 200
