"""The course builder's writes: create, merge, soft delete, each bumping dateLastModified."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from worker.simulator.catalog import Catalog

from .conftest import GRADEBOOK, RESOURCES, ROSTERING, TestClient

COLLECTION_PATHS = [
    (f"{ROSTERING}/courses", "courses", "course", "course-001"),
    (f"{ROSTERING}/courses/components", "courseComponents", "courseComponent", "lesson-001-01-01"),
    (
        f"{ROSTERING}/courses/component-resources",
        "componentResources",
        "componentResource",
        "cr-000001",
    ),
    (f"{RESOURCES}/resources", "resources", "resource", "res-000001"),
    (f"{GRADEBOOK}/assessmentResults", "assessmentResults", "assessmentResult", "ar-000001"),
]


@pytest.mark.parametrize(("path", "key", "singular", "one_id"), COLLECTION_PATHS)
def test_put_merges_and_bumps_date_last_modified(
    client: TestClient, catalog: Catalog, path: str, key: str, singular: str, one_id: str
) -> None:
    before = client.get(f"{path}/{one_id}").json()[singular]
    response = client.put(
        f"{path}/{one_id}", json={singular: {"title": "Renamed", "metadata": {"x": 1}}}
    )
    assert response.status_code == 200
    after = response.json()[singular]
    assert after["title"] == "Renamed"
    assert after["metadata"] == {**(before["metadata"] or {}), "x": 1}
    assert after["dateLastModified"] > before["dateLastModified"]
    assert client.get(f"{path}/{one_id}").json()[singular] == after
    listed = client.get(path, params={"filter": f"sourcedId='{one_id}'"}).json()[key]
    assert listed == [after]  # the list is not served from a stale cache


@pytest.mark.parametrize(("path", "key", "singular", "one_id"), COLLECTION_PATHS)
def test_delete_is_soft_and_the_record_stays_listed(
    client: TestClient, catalog: Catalog, path: str, key: str, singular: str, one_id: str
) -> None:
    total = catalog.count(key)
    before = catalog.get(key, one_id)
    assert before is not None
    response = client.delete(f"{path}/{one_id}")
    assert response.status_code == 204
    listed = client.get(path, params={"limit": 3000}).json()[key]
    assert len(listed) == total
    (record,) = [r for r in listed if r["sourcedId"] == one_id]
    assert record["status"] == "tobedeleted"
    assert record["dateLastModified"] > before["dateLastModified"]
    assert client.delete(f"{path}/no-such").status_code == 404


def test_post_creates_and_refuses_duplicates(client: TestClient) -> None:
    path = f"{ROSTERING}/courses/components"
    record = {
        "sourcedId": "lesson-new",
        "title": "New lesson",
        "course": {"sourcedId": "course-001"},
        "parent": {"sourcedId": "unit-001-01"},
        "sortOrder": 99,
        "metadata": {"khanSlug": "new-lesson"},
    }
    created = client.post(path, json={"courseComponent": record})
    assert created.status_code == 201
    body = created.json()
    assert body["sourcedIdPairs"] == {
        "suppliedSourcedId": "lesson-new",
        "allocatedSourcedId": "lesson-new",
    }
    assert body["courseComponent"]["status"] == "active"
    assert body["courseComponent"]["parent"]["href"].endswith("/courses/components/unit-001-01")
    assert created.headers["Location"].endswith("/courses/components/lesson-new")
    children = client.get(path, params={"filter": "parent.sourcedId='unit-001-01'"}).json()
    assert "lesson-new" in [c["sourcedId"] for c in children["courseComponents"]]
    assert client.post(path, json=record).status_code == 409


def test_post_without_id_allocates_one(client: TestClient) -> None:
    created = client.post(f"{RESOURCES}/resources", json={"title": "Bare"}).json()
    allocated = created["sourcedIdPairs"]["allocatedSourcedId"]
    assert created["resource"]["sourcedId"] == allocated
    assert client.get(f"{RESOURCES}/resources/{allocated}").status_code == 200


def test_put_creates_a_missing_record_with_bare_body(client: TestClient) -> None:
    path = f"{GRADEBOOK}/assessmentResults/ar-new"
    body = {
        "assessmentLineItem": {"sourcedId": "res-000001_ali"},
        "student": {"sourcedId": "student-009"},
        "score": 80,
        "scoreDate": "2025-05-01",
        "metadata": {"attempt": 3},
    }
    response = client.put(path, json=body)
    assert response.status_code == 201
    stored = response.json()["assessmentResult"]
    assert stored["metadata"] == {"attempt": 3}
    assert stored["student"]["type"] == "user"
    assert client.put(path, json={"score": 90}).status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"course": {"sourcedId": "course-002"}}, 400),  # id differs from the URL
        ([1, 2], 400),
        ("text", 400),
    ],
)
def test_bad_write_bodies_answer_400(client: TestClient, body: object, status: int) -> None:
    response = client.put(f"{ROSTERING}/courses/course-001", json=body)
    assert response.status_code == status
    assert response.json()["imsx_codeMajor"] == "failure"


def test_non_json_body_answers_400(client: TestClient) -> None:
    response = client.put(
        f"{ROSTERING}/courses/course-001",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400


def test_writes_need_a_token(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.delete(f"{ROSTERING}/courses/course-001").status_code == 401
    assert client.put(f"{ROSTERING}/courses/course-001", json={}).status_code == 401


def test_direct_catalog_mutation_is_served_at_once(client: TestClient, catalog: Catalog) -> None:
    path = f"{RESOURCES}/resources"
    client.get(path)  # warm the list cache
    catalog.update("resources", "res-000001", title="Changed directly")
    assert client.get(path).json()["resources"][0]["title"] == "Changed directly"
