from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

import httpx
import pytest
from structlog.testing import capture_logs

from core.errors import CourseNotFound, FanoutTooLarge, OneRosterProtocolError
from core.oneroster.client import OneRosterClient
from core.oneroster.fetch import (
    acourse_changed_since,
    acourses_linking_resource,
    afetch_course_records,
    course_changed_since,
    courses_linking_resource,
    fetch_course_records,
    iso_utc,
)
from core.oneroster.protocol import COMPONENT_RESOURCES, COMPONENTS, COURSES, RESOURCE_RECORDS
from tests.core.oneroster.conftest import make_async_client
from tests.core.oneroster.fakes import FakeClock, FakeOneRoster

MakeClient = Callable[..., OneRosterClient]
SINCE = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
LATER = "2024-07-01T00:00:00.000Z"


def ref(sourced_id: str) -> dict[str, str]:
    return {"sourcedId": sourced_id}


@pytest.fixture
def catalog(fake: FakeOneRoster) -> FakeOneRoster:
    """c1: 3 units, 5 lessons (+1 deleted unit), 10 resources; c2 shares r01; c3 is deleted."""
    for cid, status in (("c1", "active"), ("c2", "active"), ("c3", "tobedeleted")):
        fake.add(COURSES.path, sourcedId=cid, status=status, title=cid)
    for n in (1, 2, 3):
        fake.add(COMPONENTS.path, sourcedId=f"u{n}", course=ref("c1"), parent=None, sortOrder=n)
    fake.add(COMPONENTS.path, sourcedId="u9", course=ref("c1"), parent=None, status="tobedeleted")
    for n in range(1, 6):
        unit = f"u{(n % 3) + 1}"
        fake.add(COMPONENTS.path, sourcedId=f"l{n}", course=ref("c1"), parent=ref(unit))
        for k, rid in enumerate((f"r{2 * n - 1:02d}", f"r{2 * n:02d}")):
            fake.add(
                COMPONENT_RESOURCES.path,
                sourcedId=f"cr-l{n}-{k}",
                courseComponent=ref(f"l{n}"),
                resource=ref(rid),
                sortOrder=k,
            )
    fake.add(
        COMPONENT_RESOURCES.path,
        sourcedId="cr-dead",
        courseComponent=ref("l1"),
        resource=ref("r99"),
        status="tobedeleted",
    )
    for n in range(1, 11):
        fake.add(RESOURCE_RECORDS.path, sourcedId=f"r{n:02d}", title=f"R{n}")
    fake.add(RESOURCE_RECORDS.path, sourcedId="r99", title="gone")
    fake.add(RESOURCE_RECORDS.path, sourcedId="r20", title="other course")
    fake.add(COMPONENTS.path, sourcedId="v1", course=ref("c2"), parent=None)
    fake.add(COMPONENTS.path, sourcedId="m1", course=ref("c2"), parent=ref("v1"))
    for rid in ("r01", "r20"):
        fake.add(
            COMPONENT_RESOURCES.path,
            sourcedId=f"cr-m1-{rid}",
            courseComponent=ref("m1"),
            resource=ref(rid),
        )
    return fake


def _record(fake: FakeOneRoster, path: str, sourced_id: str) -> dict[str, object]:
    return next(r for r in fake.records[path] if r["sourcedId"] == sourced_id)


def test_course_fetch_reads_only_the_course_tree_in_batches(
    catalog: FakeOneRoster, fake_client: MakeClient
) -> None:
    client = fake_client(oneroster_batch_size=3)
    records = fetch_course_records(client, "c1")
    assert records.course.sourcedId == "c1"
    assert sorted(c.sourcedId for c in records.components) == [
        "l1", "l2", "l3", "l4", "l5", "u1", "u2", "u3",
    ]  # fmt: skip
    assert len(records.component_resources) == 10
    assert sorted(r.sourcedId for r in records.resources) == [f"r{n:02d}" for n in range(1, 11)]
    # 1 course + 1 components page + ceil(8/3) link batches + ceil(10/3) resource batches
    assert records.upstream_requests == 9 == client.requests_made
    filters = catalog.filters()
    assert filters[0] is None  # the course itself, by id
    assert filters[1] == "course.sourcedId='c1'"
    assert all(f is not None for f in filters[1:])  # never a whole-organisation list
    batches = [f.split("@")[1].strip("'").split(",") for f in filters[2:] if f and "@" in f]
    assert [len(b) for b in batches] == [3, 3, 2, 3, 3, 3, 1]
    assert all(f.startswith("courseComponent.sourcedId@") for f in filters[2:5] if f)
    assert all(f.startswith("sourcedId@") for f in filters[5:] if f)


def test_upstream_requests_count_only_this_fetch(
    catalog: FakeOneRoster, fake_client: MakeClient
) -> None:
    client = fake_client(oneroster_batch_size=50)
    client.list_courses()
    records = fetch_course_records(client, "c1")
    assert records.upstream_requests == 4
    assert client.requests_made == 5


@pytest.mark.parametrize("course_id", ["c3", "missing"])
def test_deleted_or_missing_course_is_course_not_found(
    catalog: FakeOneRoster, fake_client: MakeClient, course_id: str
) -> None:
    with pytest.raises(CourseNotFound) as info:
        fetch_course_records(fake_client(), course_id)
    assert info.value.context["course_id"] == course_id
    assert len(catalog.api_requests()) == 1


def test_async_fetch_matches_sync(catalog: FakeOneRoster, fake_client: MakeClient) -> None:
    sync = fetch_course_records(fake_client(oneroster_batch_size=3), "c1")

    async def run() -> object:
        async with make_async_client(catalog, FakeClock(), oneroster_batch_size=3) as aclient:
            return await afetch_course_records(aclient, "c1")

    assert asyncio.run(run()) == sync


def test_courses_linking_a_resource(catalog: FakeOneRoster, fake_client: MakeClient) -> None:
    client = fake_client()
    assert courses_linking_resource(client, "r01") == ["c1", "c2"]
    assert courses_linking_resource(client, "r20") == ["c2"]
    assert courses_linking_resource(client, "r99") == []  # only a deleted link
    assert catalog.filters()[:2] == ["resource.sourcedId='r01'", "sourcedId@'l1,m1'"]


def test_courses_linking_a_resource_async(catalog: FakeOneRoster) -> None:
    async def run() -> list[str]:
        async with make_async_client(catalog, FakeClock()) as aclient:
            return await acourses_linking_resource(aclient, "r01")

    assert asyncio.run(run()) == ["c1", "c2"]


def test_unchanged_course_is_not_changed(catalog: FakeOneRoster, fake_client: MakeClient) -> None:
    client = fake_client(oneroster_batch_size=3)
    assert course_changed_since(client, "c1", SINCE) is False
    probes = [r for r in catalog.api_requests() if r.url.path == RESOURCE_RECORDS.path]
    assert len(probes) == 4
    stamp = f"dateLastModified>'{iso_utc(SINCE)}'"
    assert all(p.url.params["filter"].endswith(" AND " + stamp) for p in probes)
    assert all(p.url.params["limit"] == "1" for p in probes)


@pytest.mark.parametrize(
    ("path", "sourced_id", "status"),
    [
        (COURSES.path, "c1", "active"),
        (COMPONENTS.path, "l3", "active"),
        (COMPONENTS.path, "u9", "tobedeleted"),  # deleted after since: a change
        (COMPONENT_RESOURCES.path, "cr-l4-1", "tobedeleted"),
        (RESOURCE_RECORDS.path, "r07", "active"),
        (RESOURCE_RECORDS.path, "r10", "tobedeleted"),
    ],
)
def test_any_change_in_the_tree_is_seen(
    catalog: FakeOneRoster, fake_client: MakeClient, path: str, sourced_id: str, status: str
) -> None:
    record = _record(catalog, path, sourced_id)
    record["dateLastModified"] = LATER
    record["status"] = status
    assert course_changed_since(fake_client(oneroster_batch_size=3), "c1", SINCE) is True


def test_a_change_elsewhere_is_not_this_courses_change(
    catalog: FakeOneRoster, fake_client: MakeClient
) -> None:
    _record(catalog, RESOURCE_RECORDS.path, "r20")["dateLastModified"] = LATER
    _record(catalog, COMPONENTS.path, "m1")["dateLastModified"] = LATER
    assert course_changed_since(fake_client(), "c1", SINCE) is False


def test_a_modified_course_answers_after_one_request(
    catalog: FakeOneRoster, fake_client: MakeClient
) -> None:
    _record(catalog, COURSES.path, "c1")["dateLastModified"] = LATER
    client = fake_client()
    assert course_changed_since(client, "c1", SINCE.replace(tzinfo=None)) is True
    assert client.requests_made == 1


def test_a_vanished_course_counts_as_changed(
    catalog: FakeOneRoster, fake_client: MakeClient
) -> None:
    assert course_changed_since(fake_client(), "missing", SINCE) is True


def test_changed_since_async(catalog: FakeOneRoster) -> None:
    _record(catalog, RESOURCE_RECORDS.path, "r02")["dateLastModified"] = LATER

    async def run() -> bool:
        async with make_async_client(catalog, FakeClock()) as aclient:
            return await acourse_changed_since(aclient, "c1", SINCE)

    assert asyncio.run(run()) is True


def test_iso_utc_passes_the_filter_allow_list() -> None:
    moment = dt.datetime(2024, 6, 1, 14, 30, 5, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert iso_utc(moment) == "2024-06-01T12:30:05.123Z"


# --- ids checked where they enter ---------------------------------------------------------------
def test_a_course_record_for_another_id_is_a_protocol_error(
    catalog: FakeOneRoster, make_client: MakeClient
) -> None:
    """A read of c1 answered with c2's record must not become c1's (or c2's) bundle."""
    other = _record(catalog, COURSES.path, "c2")

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == f"{COURSES.path}/c1":
            catalog.requests.append(request)
            return httpx.Response(200, json={COURSES.item_key: other})
        return catalog(request)

    client = make_client(http=httpx.Client(transport=httpx.MockTransport(answer)))
    with pytest.raises(OneRosterProtocolError) as info:
        fetch_course_records(client, "c1")
    assert info.value.context == {"course_id": "c1", "answered_id": "c2"}
    assert not info.value.retryable
    assert len(catalog.api_requests()) == 1  # nothing of c2's tree was read


def test_ids_outside_the_id_rule_are_never_sent_as_filter_values(
    catalog: FakeOneRoster, fake_client: MakeClient
) -> None:
    """A bad component or resource id is left for the builder to skip, not a failed fetch."""
    catalog.add(COMPONENTS.path, sourcedId="l bad", course=ref("c1"), parent=ref("u1"))
    catalog.add(
        COMPONENT_RESOURCES.path,
        sourcedId="cr-bad-resource",
        courseComponent=ref("l1"),
        resource=ref("r/../x"),
    )
    records = fetch_course_records(fake_client(), "c1")
    assert "l bad" in {c.sourcedId for c in records.components}
    assert "cr-bad-resource" in {link.sourcedId for link in records.component_resources}
    assert sorted(r.sourcedId for r in records.resources) == [f"r{n:02d}" for n in range(1, 11)]
    assert not any(f and ("l bad" in f or "r/../x" in f) for f in catalog.filters())


def test_fan_out_drops_course_and_component_ids_outside_the_id_rule(
    catalog: FakeOneRoster, fake_client: MakeClient
) -> None:
    for component_id, course_id in (("m-dots", ".."), ("m-space", "c 9"), ("m bad", "c4")):
        catalog.add(COMPONENTS.path, sourcedId=component_id, course=ref(course_id), parent=None)
        catalog.add(
            COMPONENT_RESOURCES.path,
            sourcedId=f"cr-{component_id}",
            courseComponent=ref(component_id),
            resource=ref("r01"),
        )
    with capture_logs() as logs:
        assert courses_linking_resource(fake_client(), "r01") == ["c1", "c2"]
    (warning,) = [e for e in logs if e["event"] == "resource_fanout_ids_invalid"]
    assert warning["skipped"] == 3
    assert warning["resource_id"] == "r01"


def test_fan_out_past_the_cap_is_refused_before_reading_further(
    fake: FakeOneRoster, fake_client: MakeClient
) -> None:
    for n in range(1, 8):
        fake.add(COMPONENTS.path, sourcedId=f"m{n}", course=ref(f"c{n}"), parent=None)
        fake.add(
            COMPONENT_RESOURCES.path,
            sourcedId=f"cr{n}",
            courseComponent=ref(f"m{n}"),
            resource=ref("shared"),
        )
    client = fake_client(resource_fanout_max=3, oneroster_batch_size=2)
    with pytest.raises(FanoutTooLarge) as info:
        courses_linking_resource(client, "shared")
    assert info.value.context["limit"] == 3
    assert info.value.context["resource_id"] == "shared"
    assert not info.value.retryable
    # 1 link page + component batches of 2 until more than 3 courses: 2 batches, not 4.
    assert len(fake.api_requests()) == 3
    assert courses_linking_resource(fake_client(resource_fanout_max=7), "shared") == [
        f"c{n}" for n in range(1, 8)
    ]
