"""The /_sim control plane: stats, catalog summary and reset, run-time options."""

from __future__ import annotations

from collections.abc import Callable

from worker.simulator.catalog import Catalog

from .conftest import GRADEBOOK, RESOURCES, ROSTERING, TestClient, authed


def test_stats_count_requests_per_kind_and_path(make_client: Callable[..., TestClient]) -> None:
    client = authed(make_client())
    client.get(f"{ROSTERING}/courses")
    client.get(f"{ROSTERING}/courses/course-001")
    client.get(f"{ROSTERING}/courses/components")
    client.get(f"{ROSTERING}/courses/component-resources")
    client.get(f"{RESOURCES}/resources")
    client.get(f"{GRADEBOOK}/assessmentResults")
    client.put(f"{ROSTERING}/courses/course-001", json={"title": "x"})
    client.delete(f"{RESOURCES}/resources/res-000001")
    client.get(f"{ROSTERING}/courses", headers={"Authorization": "Bearer nope"})
    stats = client.get("/_sim/stats").json()
    assert stats["kinds"] == {
        "token": 1,
        "courses": 3,
        "courseComponents": 1,
        "componentResources": 1,
        "resources": 1,
        "assessmentResults": 1,
        "writes": 2,
        "faults": 0,
        "unauthorized": 1,
    }
    assert stats["requests"] == 10
    assert stats["paths"][f"{ROSTERING}/courses"] == 2
    assert stats["paths"][f"{ROSTERING}/courses/course-001"] == 2
    assert stats["paths"]["/oauth/token"] == 1

    reset = client.post("/_sim/stats/reset").json()
    assert reset["requests"] == 0
    assert set(reset["kinds"].values()) == {0}


def test_control_plane_needs_no_token_and_is_not_counted(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client()
    assert client.get("/_sim/catalog/summary").status_code == 200
    assert client.get("/_sim/health").json()["status"] == "ok"
    assert client.get("/_sim/stats").json()["requests"] == 0


def test_summary_lists_courses_with_slugs_and_counts(client: TestClient, catalog: Catalog) -> None:
    summary = client.get("/_sim/catalog/summary").json()
    assert [c["sourcedId"] for c in summary["courses"]] == [
        c["sourcedId"] for c in catalog.records("courses")
    ]
    first = summary["courses"][0]
    assert first["slug"] == catalog.records("courses")[0]["metadata"]["khanSlug"]
    assert first["units"] >= 3 and first["lessons"] >= first["units"]
    assert summary["counts"]["resources"]["total"] == catalog.count("resources")
    assert summary["facts"]["deletedCourseIds"] == ["course-005"]


def test_catalog_reset_regenerates(client: TestClient) -> None:
    path = f"{ROSTERING}/courses/course-001"
    client.put(path, json={"title": "Scribbled"})
    assert client.post("/_sim/catalog/reset").status_code == 200
    assert client.get(path).json()["course"]["title"] != "Scribbled"
    before = client.get(f"{RESOURCES}/resources").json()
    client.post("/_sim/catalog/reset", json={"seed": 99})
    assert client.get(f"{RESOURCES}/resources").json() != before
    assert client.post("/_sim/catalog/reset", json={"seed": "x"}).status_code == 400


def test_options_change_at_run_time(client: TestClient) -> None:
    assert client.get("/_sim/options").json()["total_mode"] == "header"
    changed = client.post("/_sim/options", json={"total_mode": "body", "max_limit": 7})
    assert changed.json()["max_limit"] == 7
    body = client.get(f"{RESOURCES}/resources", params={"limit": 50}).json()
    assert body["limit"] == 7 and len(body["resources"]) == 7 and "totalCount" in body
    for bad in ({"total_mode": "smoke"}, {"max_limit": 0}, {"nope": 1}, {"token_ttl_s": "x"}):
        assert client.post("/_sim/options", json=bad).status_code == 400


def test_unknown_paths_and_methods_answer_imsx(client: TestClient) -> None:
    missing = client.get("/ims/oneroster/rostering/v1p2/nothing")
    assert missing.status_code == 404
    assert missing.json()["imsx_codeMajor"] == "failure"
    wrong = client.patch(f"{ROSTERING}/courses/course-001", json={})
    assert wrong.status_code == 405
    assert wrong.json()["imsx_codeMajor"] == "failure"
