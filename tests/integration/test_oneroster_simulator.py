"""The OneRoster client against the simulator over real HTTP (every paging dialect, faults, 401)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from core.errors import CourseNotFound, InvalidFilterValue
from core.oneroster.aclient import AsyncOneRosterClient
from core.oneroster.attempts import derive_next_attempt, next_attempt_number
from core.oneroster.client import OneRosterClient
from core.oneroster.fetch import (
    afetch_course_records,
    course_changed_since,
    courses_linking_resource,
    fetch_course_records,
)
from core.oneroster.filters import filter_expr, predicate
from core.oneroster.models import AssessmentResult
from core.settings import Settings
from worker.simulator.catalog import CatalogConfig
from worker.simulator.testing import SimulatorHandle, run_simulator_in_thread

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    config = CatalogConfig(courses=4, units=(2, 4), lessons=(1, 4), resources=(1, 5))
    with run_simulator_in_thread(config) as handle:
        yield handle


@pytest.fixture(autouse=True)
def clean_simulator(sim: SimulatorHandle) -> Iterator[None]:
    sim.clear_faults()
    sim.set_options(total_mode="header", max_limit=3000, token_ttl_s=3600.0)
    sim.reset_stats()
    yield
    sim.clear_faults()


def settings_for(sim: SimulatorHandle, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "oneroster_base_url": sim.base_url,
        "oneroster_client_id": sim.client_id,
        "oneroster_client_secret": sim.client_secret,
        "oneroster_timeout_s": 5.0,
        "oneroster_batch_size": 5,
        "oneroster_page_size": 10,
    }
    return Settings(**(values | overrides))


class Sleeps:
    """Records the backoff instead of sleeping it (keeps the test fast)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(sim: SimulatorHandle, sleeps: Sleeps) -> Iterator[OneRosterClient]:
    with OneRosterClient(settings_for(sim), sleep=sleeps) as made:
        yield made


def active_ids(records: list[dict[str, Any]]) -> list[str]:
    return sorted(r["sourcedId"] for r in records if r.get("status") == "active")


def course_id(sim: SimulatorHandle) -> str:
    cid = sim.catalog.facts.clean_course_id
    assert cid is not None
    return cid


def expected_tree(sim: SimulatorHandle, cid: str) -> tuple[list[str], list[str], list[str]]:
    """Active components, their active links and the active resources those link."""
    catalog = sim.catalog
    components = active_ids(catalog.components_of(cid))
    links = [
        cr
        for cr in catalog.component_resources_of(cid)
        if cr["status"] == "active" and cr["courseComponent"]["sourcedId"] in components
    ]
    linked = {cr["resource"]["sourcedId"] for cr in links}
    resources = active_ids([r for r in catalog.records("resources") if r["sourcedId"] in linked])
    return components, sorted(cr["sourcedId"] for cr in links), resources


def test_course_fetch_matches_the_catalog(sim: SimulatorHandle, client: OneRosterClient) -> None:
    cid = course_id(sim)
    records = fetch_course_records(client, cid)
    components, links, resources = expected_tree(sim, cid)
    assert sorted(c.sourcedId for c in records.components) == components
    assert sorted(cr.sourcedId for cr in records.component_resources) == links
    assert sorted(r.sourcedId for r in records.resources) == resources
    stats = sim.stats()
    assert records.upstream_requests == stats["requests"] - stats["kinds"]["token"]
    assert stats["kinds"]["token"] == client.token_fetches == 1


# A server that caps ``limit`` silently and sends no total cannot be paged: the spec's "none"
# dialect is only read with pages as large as asked.
@pytest.mark.parametrize(
    ("mode", "max_limit"),
    [
        ("header", 3000),
        ("link", 3000),
        ("body", 3000),
        ("none", 3000),
        ("header", 4),
        ("link", 4),
        ("body", 4),
    ],
)
def test_every_paging_dialect_reads_everything(
    sim: SimulatorHandle, client: OneRosterClient, mode: str, max_limit: int
) -> None:
    sim.set_options(total_mode=mode, max_limit=max_limit)
    got = client.list_components(filter_expr(predicate("course.sourcedId", "=", course_id(sim))))
    assert sorted(c.sourcedId for c in got) == active_ids(sim.catalog.components_of(course_id(sim)))
    courses = client.list_courses()
    assert sorted(c.sourcedId for c in courses) == active_ids(sim.catalog.records("courses"))


def test_faults_are_retried(sim: SimulatorHandle, client: OneRosterClient, sleeps: Sleeps) -> None:
    sim.set_faults(fail_next=2, include_token=False)
    assert len(client.list_courses()) == len(active_ids(sim.catalog.records("courses")))
    sim.set_faults(throttle_next=1, retry_after_s=3, include_token=False)
    client.list_courses()
    assert len(sleeps.seconds) == 3
    assert sleeps.seconds[-1] == 3.0
    assert sim.stats()["kinds"]["faults"] == 3


def test_revoked_token_is_replaced_once(sim: SimulatorHandle, client: OneRosterClient) -> None:
    client.list_courses()
    sim.revoke_tokens()
    client.list_courses()
    assert client.token_fetches == 2
    assert sim.stats()["kinds"]["unauthorized"] == 1


def test_twenty_threads_fetch_one_token(sim: SimulatorHandle, client: OneRosterClient) -> None:
    with ThreadPoolExecutor(max_workers=20) as pool:
        sizes = list(pool.map(lambda _: len(client.list_courses()), range(20)))
    assert len(set(sizes)) == 1
    assert sim.stats()["kinds"]["token"] == 1


def test_refused_filter_never_reaches_the_server(
    sim: SimulatorHandle, client: OneRosterClient
) -> None:
    with pytest.raises(InvalidFilterValue):
        client.list_components("metadata.khanSlug='x' OR status='tobedeleted")
    assert sim.stats()["requests"] == 0


def test_deleted_course_is_not_found(sim: SimulatorHandle, client: OneRosterClient) -> None:
    deleted = sim.catalog.facts.deleted_course_ids
    assert deleted
    with pytest.raises(CourseNotFound):
        fetch_course_records(client, deleted[0])


def test_async_client_fetches_the_same_records(
    sim: SimulatorHandle, client: OneRosterClient
) -> None:
    cid = course_id(sim)
    expected = fetch_course_records(client, cid)

    async def run() -> Any:
        async with AsyncOneRosterClient(settings_for(sim)) as aclient:
            return await afetch_course_records(aclient, cid)

    got = asyncio.run(run())
    assert (got.course, got.components, got.component_resources, got.resources) == (
        expected.course,
        expected.components,
        expected.component_resources,
        expected.resources,
    )


def test_shared_resources_name_both_courses(sim: SimulatorHandle, client: OneRosterClient) -> None:
    shared = sim.catalog.facts.shared_resources
    assert shared
    for resource_id, course_ids in shared.items():
        assert courses_linking_resource(client, resource_id) == sorted(set(course_ids))


def test_change_probe_sees_a_resource_edit(sim: SimulatorHandle, client: OneRosterClient) -> None:
    cid = course_id(sim)
    stamps = [
        r["dateLastModified"]
        for name in ("courses", "courseComponents", "componentResources", "resources")
        for r in sim.catalog.records(name)
    ]
    since = max(dt.datetime.fromisoformat(s) for s in stamps)
    assert course_changed_since(client, cid, since) is False
    _, _, resources = expected_tree(sim, cid)
    edited = sim.catalog.update("resources", resources[-1], title="edited")
    since = dt.datetime.fromisoformat(edited["dateLastModified"]) - dt.timedelta(milliseconds=1)
    assert course_changed_since(client, cid, since) is True


def test_next_attempt_matches_the_gradebook(sim: SimulatorHandle, client: OneRosterClient) -> None:
    results = sim.catalog.records("assessmentResults")
    assert results
    sample = results[0]
    student, line = sample["student"]["sourcedId"], sample["assessmentLineItem"]["sourcedId"]
    resource_id = line.removesuffix("_ali")
    mine = [
        AssessmentResult.model_validate(r)
        for r in results
        if r["student"]["sourcedId"] == student and r["assessmentLineItem"]["sourcedId"] == line
    ]
    assert derive_next_attempt(client, student, resource_id) == next_attempt_number(mine, student)
