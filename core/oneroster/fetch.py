"""Course-scoped reads: everything one bundle needs, and the probes reconcile and events use.

Every query is scoped by a course, a component list or a resource id; none lists a whole
organisation. Each operation is a protocol op, driven by either client, so it is written once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence

from core.errors import CourseNotFound, FanoutTooLarge, OneRosterNotFound, OneRosterProtocolError
from core.events.validate import is_valid_ref
from core.logging import get_logger
from core.oneroster.aclient import AsyncOneRosterClient
from core.oneroster.client import OneRosterClient
from core.oneroster.filters import filter_expr, predicate
from core.oneroster.models import ComponentResource, CourseComponent, CourseRecords, Record
from core.oneroster.protocol import (
    COMPONENT_RESOURCES,
    COMPONENTS,
    COURSES,
    RESOURCE_RECORDS,
    OneRosterProtocol,
    Op,
    counting,
)


def batched(ids: Iterable[str], size: int) -> Iterator[list[str]]:
    """Consecutive chunks of at most ``size`` ids."""
    chunk: list[str] = []
    for item in ids:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --- ops -------------------------------------------------------------------------------------
def course_records_op(proto: OneRosterProtocol, course_id: str) -> Op[CourseRecords]:
    """The course, its components, their component resources and the resources they link."""
    records, sent = yield from counting(_course_records(proto, course_id))
    records.upstream_requests = sent
    return records


def _course_records(proto: OneRosterProtocol, course_id: str) -> Op[CourseRecords]:
    try:
        course = yield from proto.get(COURSES, course_id)
    except OneRosterNotFound as exc:
        raise CourseNotFound("course not found upstream", course_id=course_id) from exc
    if course.sourcedId != course_id:
        # Stored under the id asked for, it would replace (or forge) another course's bundle.
        raise OneRosterProtocolError(
            "OneRoster answered another course's record",
            course_id=course_id,
            answered_id=course.sourcedId[:200],
        )
    if not course.is_active:
        raise CourseNotFound(
            "course is deleted upstream", course_id=course_id, status=course.status
        )
    components = yield from _components(proto, course_id, include_inactive=False)
    # Records with ids outside the id rule are left for the builder to skip and count; their
    # ids are never sent as filter values.
    links = yield from _component_resources(
        proto,
        sorted({c.sourcedId for c in components if is_valid_ref(c.sourcedId)}),
        include_inactive=False,
    )
    resource_ids = {link.resource.sourcedId for link in links}
    resources = []
    for chunk in batched(sorted(filter(is_valid_ref, resource_ids)), _batch(proto)):
        flt = filter_expr(predicate("sourcedId", "@", chunk))
        resources += yield from proto.list_all(RESOURCE_RECORDS, flt)
    return CourseRecords(
        course=course, components=components, component_resources=links, resources=resources
    )


def courses_linking_resource_op(proto: OneRosterProtocol, resource_id: str) -> Op[list[str]]:
    """Ids of the courses whose active components link ``resource_id`` (sorted, unique).

    Ids outside the id rule are dropped (logged); more than ``resource_fanout_max`` courses
    raise ``FanoutTooLarge``, before any further page is read.
    """
    limit = proto.settings.resource_fanout_max
    flt = filter_expr(predicate("resource.sourcedId", "=", resource_id))
    links = yield from proto.list_all(COMPONENT_RESOURCES, flt)
    component_ids = {link.courseComponent.sourcedId for link in links}
    course_ids: set[str] = set()
    dropped = 0
    for chunk in batched(sorted(filter(is_valid_ref, component_ids)), _batch(proto)):
        components = yield from proto.list_all(
            COMPONENTS, filter_expr(predicate("sourcedId", "@", chunk))
        )
        for component in components:
            if is_valid_ref(component.course.sourcedId):
                course_ids.add(component.course.sourcedId)
            else:
                dropped += 1
        if len(course_ids) > limit:
            raise FanoutTooLarge(
                f"resource is linked by more than {limit} courses (CB_RESOURCE_FANOUT_MAX)",
                resource_id=resource_id,
                courses_found=len(course_ids),
                limit=limit,
            )
    dropped += sum(1 for cid in component_ids if not is_valid_ref(cid))
    if dropped:
        get_logger(__name__).warning(
            "resource_fanout_ids_invalid",
            resource_id=resource_id,
            outcome="skipped",
            reason="invalid_id",
            skipped=dropped,
        )
    return sorted(course_ids)


def course_changed_since_op(
    proto: OneRosterProtocol, course_id: str, since: dt.datetime
) -> Op[bool]:
    """Whether the course or anything in its tree was modified (or deleted) after ``since``.

    Deleted records count as changes, so these reads keep them. Components and component
    resources are read whole (their ids scope the next query); resources are only probed with
    ``dateLastModified>'since'`` and ``limit=1``. A course gone upstream counts as changed.
    """
    since = _utc(since)
    try:
        course = yield from proto.get(COURSES, course_id)
    except OneRosterNotFound:
        return True
    if not course.is_active or _modified_after(course, since):
        return True
    components = yield from _components(proto, course_id, include_inactive=True)
    if any(_modified_after(c, since) for c in components):
        return True
    live = sorted({c.sourcedId for c in components if c.is_active})
    links = yield from _component_resources(proto, live, include_inactive=True)
    if any(_modified_after(link, since) for link in links):
        return True
    stamp = predicate("dateLastModified", ">", iso_utc(since))
    resource_ids = sorted({link.resource.sourcedId for link in links if link.is_active})
    for chunk in batched(resource_ids, _batch(proto)):
        flt = filter_expr(predicate("sourcedId", "@", chunk), stamp)
        changed = yield from proto.any_record(RESOURCE_RECORDS, flt)
        if changed:
            return True
    return False


def _components(
    proto: OneRosterProtocol, course_id: str, *, include_inactive: bool
) -> Op[list[CourseComponent]]:
    flt = filter_expr(predicate("course.sourcedId", "=", course_id))
    return (yield from proto.list_all(COMPONENTS, flt, include_inactive=include_inactive))


def _component_resources(
    proto: OneRosterProtocol, component_ids: Sequence[str], *, include_inactive: bool
) -> Op[list[ComponentResource]]:
    links: list[ComponentResource] = []
    for chunk in batched(component_ids, _batch(proto)):
        flt = filter_expr(predicate("courseComponent.sourcedId", "@", chunk))
        page = yield from proto.list_all(
            COMPONENT_RESOURCES, flt, include_inactive=include_inactive
        )
        links += page
    return links


def _batch(proto: OneRosterProtocol) -> int:
    return max(1, proto.settings.oneroster_batch_size)


def _utc(moment: dt.datetime) -> dt.datetime:
    """Naive datetimes are taken as UTC."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _modified_after(record: Record, since: dt.datetime) -> bool:
    # A record without dateLastModified cannot prove it is unchanged.
    return record.dateLastModified is None or _utc(record.dateLastModified) > since


def iso_utc(moment: dt.datetime) -> str:
    """``2024-05-01T12:00:00.000Z``: an ISO instant that passes the filter value allow-list."""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- sync callers ----------------------------------------------------------------------------
def fetch_course_records(client: OneRosterClient, course_id: str) -> CourseRecords:
    """Everything one bundle needs (see :func:`course_records_op`); raises ``CourseNotFound``."""
    return client.run(course_records_op(client.protocol, course_id))


def courses_linking_resource(client: OneRosterClient, resource_id: str) -> list[str]:
    """Ids of the courses that link ``resource_id`` (sorted, unique)."""
    return client.run(courses_linking_resource_op(client.protocol, resource_id))


def course_changed_since(client: OneRosterClient, course_id: str, since: dt.datetime) -> bool:
    """Cheap reconcile probe (see :func:`course_changed_since_op`)."""
    return client.run(course_changed_since_op(client.protocol, course_id, since))


# --- async callers ---------------------------------------------------------------------------
async def afetch_course_records(aclient: AsyncOneRosterClient, course_id: str) -> CourseRecords:
    """Async twin of :func:`fetch_course_records`."""
    return await aclient.run(course_records_op(aclient.protocol, course_id))


async def acourses_linking_resource(aclient: AsyncOneRosterClient, resource_id: str) -> list[str]:
    """Async twin of :func:`courses_linking_resource`."""
    return await aclient.run(courses_linking_resource_op(aclient.protocol, resource_id))


async def acourse_changed_since(
    aclient: AsyncOneRosterClient, course_id: str, since: dt.datetime
) -> bool:
    """Async twin of :func:`course_changed_since`."""
    return await aclient.run(course_changed_since_op(aclient.protocol, course_id, since))
