"""Injected faults: errors, throttling, outages, latency, flapping results."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from worker.simulator.faults import FaultInjector, FaultSettings

from .conftest import GRADEBOOK, RESOURCES, ROSTERING, Clock, TestClient

COURSES = f"{ROSTERING}/courses"
RESULTS = f"{GRADEBOOK}/assessmentResults"
TOKEN_FORM = {
    "grant_type": "client_credentials",
    "client_id": "demo-client",
    "client_secret": "demo-secret",
}


def set_faults(client: TestClient, **settings: Any) -> dict[str, Any]:
    response = client.post("/_sim/faults", json=settings)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def statuses(client: TestClient, n: int, path: str = COURSES) -> Counter[int]:
    return Counter(client.get(path).status_code for _ in range(n))


def test_error_rate_one_fails_every_request_with_imsx_body(client: TestClient) -> None:
    set_faults(client, error_rate=1.0, error_status=502)
    response = client.get(COURSES)
    assert response.status_code == 502
    assert response.json()["imsx_codeMajor"] == "failure"
    assert statuses(client, 5) == {502: 5}


def test_error_rate_is_a_share(client: TestClient) -> None:
    set_faults(client, error_rate=0.3, seed=1)
    counts = statuses(client, 200)
    assert 30 <= counts[503] <= 90
    assert counts[503] + counts[200] == 200


def test_throttling_answers_429_with_retry_after(client: TestClient) -> None:
    set_faults(client, throttle_rate=1.0, retry_after_s=2)
    response = client.get(COURSES)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"


def test_fail_next_and_throttle_next_are_consumed_in_order(client: TestClient) -> None:
    set_faults(client, fail_next=2, throttle_next=1)
    got = [client.get(COURSES).status_code for _ in range(4)]
    assert got == [503, 503, 429, 200]


def test_outage_hits_every_api_request_including_the_token(client: TestClient) -> None:
    set_faults(client, outage=True)
    assert client.get(COURSES).status_code == 503
    assert client.get(f"{RESOURCES}/resources/res-000001").status_code == 503
    assert client.post("/oauth/token", data=TOKEN_FORM).status_code == 503
    assert client.get("/_sim/stats").status_code == 200  # the control plane stays up
    assert client.delete("/_sim/faults").status_code == 200
    assert client.get(COURSES).status_code == 200


def test_timed_outage_clears_itself(client: TestClient, clock: Clock) -> None:
    described = set_faults(client, outage_s=30)
    assert described["remaining"]["outageActive"] is True
    clock.advance(29)
    assert client.get(COURSES).status_code == 503
    clock.advance(1)
    assert client.get(COURSES).status_code == 200
    assert client.get("/_sim/faults").json()["outage"] is False


def test_token_can_be_spared(client: TestClient) -> None:
    set_faults(client, outage=True, include_token=False)
    assert client.post("/oauth/token", data=TOKEN_FORM).status_code == 200
    assert client.get(COURSES).status_code == 503


def test_path_prefixes_limit_the_blast(client: TestClient) -> None:
    set_faults(client, error_rate=1.0, path_prefixes=[RESOURCES])
    assert client.get(COURSES).status_code == 200
    assert client.get(f"{RESOURCES}/resources").status_code == 503


def test_latency_delays_answers(client: TestClient) -> None:
    set_faults(client, latency_ms=60)
    started = time.perf_counter()
    assert client.get(COURSES).status_code == 200
    assert time.perf_counter() - started >= 0.06


def test_results_flap_empty_for_a_while(client: TestClient, clock: Clock) -> None:
    full = client.get(RESULTS).json()["assessmentResults"]
    assert full
    set_faults(client, flap_results_s=10)
    flapping = client.get(RESULTS)
    assert flapping.status_code == 200
    assert flapping.json() == {"assessmentResults": []}
    assert flapping.headers["X-Total-Count"] == "0"
    assert client.get(f"{RESULTS}/ar-000001").status_code == 200  # single reads unaffected
    assert client.get(COURSES).json()["courses"]  # other lists unaffected
    clock.advance(10)
    assert client.get(RESULTS).json()["assessmentResults"] == full


def test_results_flap_empty_for_n_requests(client: TestClient) -> None:
    set_faults(client, flap_results_requests=2)
    sizes = [len(client.get(RESULTS).json()["assessmentResults"]) for _ in range(3)]
    assert sizes[:2] == [0, 0]
    assert sizes[2] > 0


@pytest.mark.parametrize(
    "body", [{"error_rate": 2}, {"unknown_knob": 1}, {"latency_ms": -1}, {"error_status": 404}]
)
def test_invalid_fault_settings_answer_400(client: TestClient, body: dict[str, Any]) -> None:
    assert client.post("/_sim/faults", json=body).status_code == 400
    assert client.get(COURSES).status_code == 200


def test_posting_replaces_the_whole_configuration(client: TestClient) -> None:
    set_faults(client, error_rate=1.0)
    described = set_faults(client, latency_ms=1)
    assert described["error_rate"] == 0.0
    assert client.get(COURSES).status_code == 200


def test_faults_are_counted_in_stats(client: TestClient) -> None:
    client.post("/_sim/stats/reset")
    set_faults(client, fail_next=1, throttle_next=1, flap_results_requests=1)
    client.get(COURSES)
    client.get(COURSES)
    client.get(RESULTS)
    stats = client.get("/_sim/stats").json()
    assert stats["kinds"]["faults"] == 3
    assert stats["faultReasons"] == {"fail_next": 1, "throttle_next": 1, "flap_results": 1}
    assert stats["kinds"]["courses"] == 2


def test_same_seed_same_fault_sequence() -> None:
    def run() -> list[int | None]:
        injector = FaultInjector()
        injector.configure(FaultSettings(error_rate=0.5, seed=3), now=0.0)
        return [injector.decide("/x", now=0.0).status for _ in range(50)]

    assert run() == run()


def test_rate_limit_is_a_token_bucket_answering_429_with_retry_after(
    client: TestClient, clock: Clock
) -> None:
    set_faults(client, rate_limit_rps=2.0, rate_limit_burst=3.0)
    assert statuses(client, 5) == {200: 3, 429: 2}  # the burst of 3 through, 2 throttled
    throttled = client.get(COURSES)
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "1"  # a token in 0.5 s: whole seconds, at least 1
    clock.advance(0.5)
    assert statuses(client, 2) == {200: 1, 429: 1}  # one token came back in half a second
    clock.advance(10.0)
    assert statuses(client, 4) == {200: 3, 429: 1}  # the bucket holds at most the burst


def test_rate_limit_retry_after_says_when_a_token_comes(client: TestClient) -> None:
    set_faults(client, rate_limit_rps=0.25, rate_limit_burst=1.0)
    client.get(COURSES)
    assert client.get(COURSES).headers["Retry-After"] == "4"


def test_rate_limit_counts_answers_per_tenth_of_a_second(client: TestClient) -> None:
    client.post("/_sim/stats/reset")
    set_faults(client, rate_limit_rps=1.0, rate_limit_burst=2.0)
    statuses(client, 5)
    timeline = client.get("/_sim/stats").json()["timeline"]
    assert sum(row[1] for row in timeline) == 5  # requests received
    assert sum(row[2] for row in timeline) == 3  # of which answered 429


# --- drift (publish safety) ---------------------------------------------------------------------
def _a_course_with_components(client: TestClient) -> str:
    courses = client.get(COURSES).json()["courses"]
    for record in courses:
        flt = f"course.sourcedId='{record['sourcedId']}'"
        found = client.get(f"{COURSES}/components", params={"filter": flt}).json()
        if found["courseComponents"]:
            return str(record["sourcedId"])
    raise AssertionError("no course has components")


def test_drift_lists_answer_200_empty_for_a_while(client: TestClient, clock: Clock) -> None:
    course_id = _a_course_with_components(client)
    flt = {"filter": f"course.sourcedId='{course_id}'"}
    set_faults(client, drift_empty_lists=["courseComponents"], drift_s=10)
    drifting = client.get(f"{COURSES}/components", params=flt)
    assert drifting.status_code == 200 and drifting.json()["courseComponents"] == []
    assert client.get(f"{COURSES}/{course_id}").status_code == 200  # other reads untouched
    clock.advance(10)
    assert client.get(f"{COURSES}/components", params=flt).json()["courseComponents"]


def test_drift_answers_404_for_a_course_that_exists(client: TestClient, clock: Clock) -> None:
    course_id = _a_course_with_components(client)
    set_faults(client, drift_missing_courses=[course_id])
    response = client.get(f"{COURSES}/{course_id}")
    assert response.status_code == 404
    assert response.json()["imsx_codeMajor"] == "failure"
    clock.advance(60)
    assert client.get(f"{COURSES}/{course_id}").status_code == 404  # no drift_s: until cleared
    client.delete("/_sim/faults")
    assert client.get(f"{COURSES}/{course_id}").status_code == 200
