"""Read routes (scope ``read``): bundles, units, lessons, resources, subjects, redirects.

Each route decodes, asks the reader and answers existing bytes. A near-cache hit stays on the
event loop and touches no Redis; only a miss or a backstop check goes to a worker thread, and
concurrent requests for the same thing share that one call (``OffLoop``). A read that would build
a course (``reader.is_cold``) spends one of its token's cold builds (``CB_COLD_BUILDS_PER_TOKEN``
a minute); past them it is 429. Reads of built courses are never limited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from core.bundle.nearcache import CachedBundle, Slice
from core.bundle.reader import BundleReader
from core.errors import LookupMiss
from core.singleflight.aio import AsyncSingleFlight
from core.singleflight.stats import FlightStats
from worker.api.auth import token_id_of, too_many
from worker.api.metrics import ApiMetrics
from worker.api.representation import (
    RawResponse,
    body_response,
    bundle_headers,
    choose_coding,
    conditional_headers,
    etag_matches,
    not_modified,
    slice_response,
)
from worker.api.schemas import (
    NOT_MODIFIED,
    BundleOut,
    CourseId,
    CourseQuery,
    CourseSlug,
    KindQuery,
    LessonSliceOut,
    LessonSlug,
    RedirectOut,
    ResourceId,
    ResourceSliceOut,
    SlugQuery,
    Subject,
    SubjectCoursesOut,
    SubjectQuery,
    UnitOut,
    UnitQuery,
    UnitSlug,
    ok_headers,
    problem,
    responses,
)

COURSE_404 = problem(404, "No such course (remembered briefly)")
COLD_429 = problem(429, "The token used up its cold builds for now (Retry-After)")

T = TypeVar("T")


class OffLoop:
    """Runs a blocking reader call in the thread pool once per key, however many requests wait.

    Without it, a stampede of N requests on one cold course holds N pool threads (40 by
    default) while one builds, and requests for other courses queue behind them; with it, the
    other N-1 wait on the event loop and wake together when the one call returns.
    """

    def __init__(self, *, enabled: bool = True) -> None:
        # its own counters: the exported cb_singleflight_* count builds, not request sharing
        self._flights: AsyncSingleFlight[Any] = AsyncSingleFlight(
            enabled=enabled, name="api", stats=FlightStats()
        )

    async def run(self, key: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread, shared by every concurrent caller with ``key``."""
        return cast("T", await self._flights.do(key, lambda: run_in_threadpool(fn, *args)))


def build_router(reader: BundleReader, metrics: ApiMetrics, *, coalesce: bool = True) -> APIRouter:
    """The read routes, bound to one reader (``coalesce=False`` only to show what it prevents)."""
    router = APIRouter(prefix="/v1", tags=["read"])
    off_loop = OffLoop(enabled=coalesce)

    async def course(request: Request, course_id: str) -> CachedBundle:
        entry = reader.peek(course_id)
        if entry is None:
            await admit_cold(request, course_id)
            entry = await off_loop.run("course\x00" + course_id, reader.load, course_id)
        return entry

    async def admit_cold(request: Request, course_id: str) -> None:
        """Charge the token one cold build if this read would build the course; 429 past them."""
        limit = request.app.state.services.cold_builds
        if not limit.enabled:
            return
        if not await off_loop.run("cold\x00" + course_id, reader.is_cold, course_id):
            return
        decision = limit.take(token_id_of(request.scope), 1, time.monotonic())
        if not decision.allowed:
            raise too_many(
                f"this token may cause {round(limit.rate * 60)} cold builds a minute; "
                "built courses stay readable",
                decision.retry_after_s,
            )

    async def course_of_slug(request: Request, slug: str) -> CachedBundle:
        course_id = reader.cached_slug(slug)
        if course_id is None:
            course_id = await off_loop.run("slug\x00" + slug, reader.resolve_slug, slug)
        return await course(request, course_id)

    def answer(request: Request, entry: CachedBundle, piece: Slice, part: str) -> Response:
        stale = reader.is_stale(entry)
        if_none_match, accept = conditional_headers(request.scope["headers"])
        response, coding = slice_response(
            piece,
            generation=entry.generation,
            built_at=entry.meta.built_at,
            stale=stale,
            if_none_match=if_none_match,
            accept_encoding=accept,
        )
        account(response, part, coding, stale)
        return response

    def account(response: RawResponse, part: str, coding: str, stale: bool) -> None:
        if stale:
            metrics.stale.inc()
        if response.status_code == 304:
            metrics.not_modified.inc()
        else:
            metrics.served(part, coding, len(response.body))

    async def whole(request: Request, entry: CachedBundle) -> Response:
        if_none_match, accept = conditional_headers(request.scope["headers"])
        coding = choose_coding(accept)
        data = None
        if not etag_matches(if_none_match, entry.meta.etag):
            data = entry.blob(coding)
            if data is None:  # first request of this encoding for this generation
                key = f"blob\x00{entry.course_id}\x00{entry.generation}\x00{coding}"
                entry, data = await off_loop.run(key, reader.blob, entry, coding)
        stale = reader.is_stale(entry)
        headers = bundle_headers(
            entry.meta.etag, entry.generation, entry.meta.built_at, stale=stale
        )
        response = not_modified(headers) if data is None else body_response(data, headers, coding)
        account(response, "bundle", coding, stale)
        return response

    # The lesson read is the hottest route: first in line for matching.
    @router.get(
        "/courses/{courseId}/units/{unitSlug}/lessons/{lessonSlug}",
        response_model=LessonSliceOut,
        responses=responses(
            ok_headers(), NOT_MODIFIED, COLD_429, problem(404, "No such course, unit or lesson")
        ),
        operation_id="getLesson",
        summary="One lesson exactly as in the bundle, plus unitSlug",
    )
    async def get_lesson(
        request: Request, course_id: CourseId, unit_slug: UnitSlug, lesson_slug: LessonSlug
    ) -> Response:
        entry = await course(request, course_id)
        piece = entry.lesson(unit_slug, lesson_slug)
        if piece is None:
            raise LookupMiss(
                "no such lesson in this course",
                course_id=course_id,
                unit=unit_slug,
                lesson=lesson_slug,
            )
        return answer(request, entry, piece, "lesson")

    bundle_docs = responses(ok_headers(), NOT_MODIFIED, COURSE_404, COLD_429)

    @router.get(
        "/courses/{courseId}/bundle",
        response_model=BundleOut,
        responses=bundle_docs,
        operation_id="getCourseBundle",
        summary="The whole course bundle (built once on first request)",
    )
    async def get_bundle(request: Request, course_id: CourseId) -> Response:
        return await whole(request, await course(request, course_id))

    @router.get(
        "/courses/by-slug/{courseSlug}/bundle",
        response_model=BundleOut,
        responses=bundle_docs,
        operation_id="getCourseBundleBySlug",
        summary="The whole course bundle, found by the course's slug",
    )
    async def get_bundle_by_slug(request: Request, course_slug: CourseSlug) -> Response:
        return await whole(request, await course_of_slug(request, course_slug))

    @router.get(
        "/courses/{courseId}/units/{unitSlug}",
        response_model=UnitOut,
        responses=responses(
            ok_headers(),
            NOT_MODIFIED,
            COLD_429,
            problem(404, "No such course, or no such unit in it"),
        ),
        operation_id="getUnit",
        summary="One unit exactly as in the bundle",
    )
    async def get_unit(request: Request, course_id: CourseId, unit_slug: UnitSlug) -> Response:
        entry = await course(request, course_id)
        piece = entry.unit(unit_slug)
        if piece is None:
            raise LookupMiss("no such unit in this course", course_id=course_id, unit=unit_slug)
        return answer(request, entry, piece, "unit")

    @router.get(
        "/courses/{courseId}/resources/{resourceId}",
        response_model=ResourceSliceOut,
        responses=responses(
            ok_headers(),
            NOT_MODIFIED,
            COLD_429,
            problem(404, "No such course, or the resource is not in it"),
        ),
        operation_id="getResource",
        summary="One resource as in the bundle, plus unitSlug and lessonSlug",
    )
    async def get_resource(
        request: Request, course_id: CourseId, resource_id: ResourceId
    ) -> Response:
        entry = await course(request, course_id)
        piece = entry.resource(resource_id)
        if piece is None:
            raise LookupMiss(
                "no such resource in this course", course_id=course_id, resource=resource_id
            )
        return answer(request, entry, piece, "resource")

    @router.get(
        "/subjects/{subject}/courses",
        response_model=SubjectCoursesOut,
        responses=responses(ok_headers(), NOT_MODIFIED),
        operation_id="listSubjectCourses",
        summary="One summary per built course of the subject, ordered by slug",
    )
    async def list_subject(request: Request, subject: Subject) -> Response:
        listing = reader.cached_subject(subject)
        if listing is None:
            listing = await off_loop.run("subject\x00" + subject, reader.subject, subject)
        if_none_match, accept = conditional_headers(request.scope["headers"])
        response, coding = slice_response(
            listing.slice,
            generation=listing.generation,
            built_at=listing.built_at,
            stale=False,
            if_none_match=if_none_match,
            accept_encoding=accept,
        )
        account(response, "subject", coding, False)
        return response

    @router.get(
        "/redirects/assessment",
        response_model=RedirectOut,
        responses=responses(
            ok_headers(),
            NOT_MODIFIED,
            COLD_429,
            problem(404, "Nothing matches"),
            problem(409, "The slug resolves to more than one place (see candidates)"),
        ),
        operation_id="resolveAssessmentRedirect",
        summary="The canonical path of a quiz, unit test or course challenge page",
    )
    async def redirect_assessment(
        request: Request,
        *,
        subject: SubjectQuery,
        course_slug: CourseQuery,
        kind: KindQuery,
        slug: SlugQuery,
        unit: UnitQuery = None,
    ) -> Response:
        entry = await course_of_slug(request, course_slug)
        piece = reader.redirect(
            entry, subject=subject, course_slug=course_slug, unit_slug=unit, kind=kind, slug=slug
        )
        return answer(request, entry, piece, "redirect")

    return router
