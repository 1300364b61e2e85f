"""Read endpoints: collection keys, single records, paging, total signals, sorting, filters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from worker.simulator.app import create_app
from worker.simulator.catalog import Catalog, generate_catalog, single_course_config

from .conftest import GRADEBOOK, RESOURCES, ROSTERING, TestClient, authed

ENDPOINTS = [
    (f"{ROSTERING}/courses", "courses", "course", "course-001"),
    (f"{ROSTERING}/courses/components", "courseComponents", "courseComponent", "unit-001-01"),
    (
        f"{ROSTERING}/courses/component-resources",
        "componentResources",
        "componentResource",
        "cr-000001",
    ),
    (f"{RESOURCES}/resources", "resources", "resource", "res-000001"),
    (f"{GRADEBOOK}/assessmentResults", "assessmentResults", "assessmentResult", "ar-000001"),
]


@pytest.mark.parametrize(("path", "key", "singular", "one_id"), ENDPOINTS)
def test_each_collection_lists_and_gets_by_id(
    client: TestClient, catalog: Catalog, path: str, key: str, singular: str, one_id: str
) -> None:
    listed = client.get(path, params={"limit": 5})
    assert listed.status_code == 200
    assert listed.headers["content-type"] == "application/json"
    body = listed.json()
    assert list(body) == [key]
    assert body[key] == catalog.records(key)[:5]
    assert int(listed.headers["X-Total-Count"]) == catalog.count(key)

    one = client.get(f"{path}/{one_id}")
    assert one.status_code == 200
    assert one.json() == {singular: catalog.get(key, one_id)}

    missing = client.get(f"{path}/no-such-id")
    assert missing.status_code == 404
    assert missing.json()["imsx_codeMajor"] == "failure"
    assert (
        missing.json()["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"]
        == "unknownobject"
    )


def test_literal_component_paths_win_over_course_ids(client: TestClient) -> None:
    for literal, key in (
        ("components", "courseComponents"),
        ("component-resources", "componentResources"),
    ):
        response = client.get(f"{ROSTERING}/courses/{literal}")
        assert response.status_code == 200
        assert key in response.json()


def test_default_page_is_100_and_offset_pages_on(client: TestClient, catalog: Catalog) -> None:
    first = client.get(f"{RESOURCES}/resources").json()["resources"]
    second = client.get(f"{RESOURCES}/resources", params={"offset": 100}).json()["resources"]
    everything = catalog.records("resources")
    assert first == everything[:100]
    assert second == everything[100:200]
    beyond = client.get(f"{RESOURCES}/resources", params={"offset": 10_000})
    assert beyond.json() == {"resources": []}


def test_limit_is_capped_at_max_limit(make_client: Callable[..., TestClient]) -> None:
    client = authed(make_client(max_limit=50))
    response = client.get(f"{RESOURCES}/resources", params={"limit": 1000})
    assert len(response.json()["resources"]) == 50


def test_default_cap_is_3000(client: TestClient) -> None:
    # The small catalog has fewer than 3000 records: asking for more returns them all.
    response = client.get(f"{RESOURCES}/resources", params={"limit": 100_000})
    assert len(response.json()["resources"]) == int(response.headers["X-Total-Count"])


@pytest.mark.parametrize(
    "params", [{"limit": "x"}, {"limit": 0}, {"offset": -1}, {"orderBy": "up"}]
)
def test_bad_paging_parameters_answer_400(client: TestClient, params: dict[str, Any]) -> None:
    response = client.get(f"{RESOURCES}/resources", params=params)
    assert response.status_code == 400
    assert response.json()["imsx_severity"] == "error"


def _walk_links(client: TestClient, path: str, key: str) -> tuple[list[str], int]:
    url: str | None = f"{path}?limit=40&sort=sourcedId"
    seen: list[str] = []
    pages = 0
    while url:
        response = client.get(url)
        pages += 1
        assert "X-Total-Count" not in response.headers
        seen += [r["sourcedId"] for r in response.json()[key]]
        link = response.headers.get("Link")
        url = link.split(">")[0].lstrip("<") if link else None
        if link:
            assert link.endswith('rel="next"')
    return seen, pages


def test_link_mode_chains_next_pages_to_the_end(
    make_client: Callable[..., TestClient], catalog: Catalog
) -> None:
    client = authed(make_client(total_mode="link"))
    seen, pages = _walk_links(client, f"{ROSTERING}/courses/components", "courseComponents")
    expected = sorted(r["sourcedId"] for r in catalog.records("courseComponents"))
    assert seen == expected
    assert pages == -(-len(expected) // 40)


def test_body_mode_puts_totals_in_the_body(
    make_client: Callable[..., TestClient], catalog: Catalog
) -> None:
    client = authed(make_client(total_mode="body", max_limit=30))
    body = client.get(f"{RESOURCES}/resources", params={"limit": 100, "offset": 60}).json()
    assert body["totalCount"] == catalog.count("resources")
    assert body["offset"] == 60
    assert body["limit"] == 30  # the effective, capped limit
    assert len(body["resources"]) == 30


def test_none_mode_gives_no_total_anywhere(make_client: Callable[..., TestClient]) -> None:
    client = authed(make_client(total_mode="none"))
    response = client.get(f"{RESOURCES}/resources", params={"limit": 10})
    assert "X-Total-Count" not in response.headers
    assert "Link" not in response.headers
    assert list(response.json()) == ["resources"]


def test_sort_and_order(client: TestClient, catalog: Catalog) -> None:
    path = f"{ROSTERING}/courses/components"
    asc = client.get(path, params={"sort": "sourcedId", "limit": 3000}).json()["courseComponents"]
    assert [c["sourcedId"] for c in asc] == sorted(
        c["sourcedId"] for c in catalog.records("courseComponents")
    )
    desc = client.get(path, params={"sort": "sourcedId", "orderBy": "desc", "limit": 3000})
    assert desc.json()["courseComponents"] == asc[::-1]
    by_order = client.get(path, params={"sort": "sortOrder", "limit": 3000}).json()
    orders = [c["sortOrder"] for c in by_order["courseComponents"]]
    assert orders == sorted(orders)


def test_filters_over_http(client: TestClient, catalog: Catalog) -> None:
    path = f"{ROSTERING}/courses/components"
    response = client.get(path, params={"filter": "course.sourcedId='course-002'", "limit": 3000})
    got = response.json()["courseComponents"]
    assert got == catalog.components_of("course-002")
    assert int(response.headers["X-Total-Count"]) == len(got)

    lessons = [c["sourcedId"] for c in got if c["parent"] is not None][:3]
    crs = client.get(
        f"{ROSTERING}/courses/component-resources",
        params={"filter": f"courseComponent.sourcedId@'{','.join(lessons)}'", "limit": 3000},
    ).json()["componentResources"]
    assert crs
    assert {cr["courseComponent"]["sourcedId"] for cr in crs} == set(lessons)

    units = client.get(
        path,
        params={"filter": "course.sourcedId='course-002' AND parent.sourcedId!='x'"},
    ).json()["courseComponents"]
    assert units and all(u["parent"] is None or u["parent"]["sourcedId"] != "x" for u in units)

    slug = catalog.records("resources")[3]["metadata"]["khanSlug"]
    by_slug = client.get(f"{RESOURCES}/resources", params={"filter": f"metadata.khanSlug='{slug}'"})
    assert [r["metadata"]["khanSlug"] for r in by_slug.json()["resources"]] == [slug]

    either = client.get(
        f"{ROSTERING}/courses",
        params={"filter": "sourcedId='course-001' OR status='tobedeleted'", "sort": "sourcedId"},
    ).json()["courses"]
    assert [c["sourcedId"] for c in either] == ["course-001", "course-005"]


def test_id_batches_answer_in_catalog_order(client: TestClient, catalog: Catalog) -> None:
    wanted = ["res-000007", "res-000002", "res-000005", "nope"]
    response = client.get(
        f"{RESOURCES}/resources", params={"filter": f"sourcedId@'{','.join(wanted)}'"}
    )
    assert [r["sourcedId"] for r in response.json()["resources"]] == [
        "res-000002",
        "res-000005",
        "res-000007",
    ]


@pytest.mark.parametrize(
    "expression", ["status='active", "status=active", "a='1' AND b='2' OR c='3'", "x~"]
)
def test_malformed_filter_answers_400(client: TestClient, expression: str) -> None:
    response = client.get(f"{RESOURCES}/resources", params={"filter": expression})
    assert response.status_code == 400
    body = response.json()
    assert body["imsx_codeMajor"] == "failure"
    assert "filter" in body["imsx_description"]


def test_fields_projection(client: TestClient) -> None:
    response = client.get(
        f"{RESOURCES}/resources", params={"fields": "sourcedId,status", "limit": 2}
    )
    assert all(set(r) == {"sourcedId", "status"} for r in response.json()["resources"])


def test_deleted_records_stay_readable(client: TestClient, catalog: Catalog) -> None:
    deleted = catalog.facts.deleted["resources"][0]
    response = client.get(f"{RESOURCES}/resources/{deleted}")
    assert response.json()["resource"]["status"] == "tobedeleted"


def test_a_3000_record_page_serves_whole() -> None:
    big = generate_catalog(single_course_config(3200))
    with TestClient(create_app(big)) as client:
        body = authed(client).get(f"{RESOURCES}/resources", params={"limit": 3000}).json()
    assert len(body["resources"]) == 3000
    assert body["resources"] == big.records("resources")[:3000]
