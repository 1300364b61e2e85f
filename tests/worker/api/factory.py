"""Courses for API tests: records made with the bundle tests' helpers, and storing them."""

from __future__ import annotations

import datetime as dt

from core.bundle.builder import build_bundle
from core.bundle.codec import encode_bundle
from core.bundle.model import BundleDoc
from core.bundle.store import BundleStore
from core.oneroster.models import CourseRecords
from tests.core.bundle.records import Catalog, course


def records(
    course_id: str = "course-1",
    *,
    slug: str = "algebra",
    subject: str = "math",
    units: int = 2,
    lessons: int = 2,
    per_lesson: int = 2,
    challenge: bool = True,
    ambiguous_quiz: bool = False,
) -> CourseRecords:
    """A regular course: ``u{i}`` units of ``u{i}-l{j}`` lessons of videos, a quiz per unit."""
    cat = Catalog(course=course(course_id, slug=slug, subject=subject))
    own = {"course_id": course_id}
    for u in range(units):
        unit = cat.unit(f"{course_id}-u{u}", slug=f"u{u}", sort=u, **own)
        for le in range(lessons):
            lesson = cat.lesson(f"{course_id}-u{u}-l{le}", unit, slug=f"l{le}", sort=le, **own)
            for r in range(per_lesson):
                rid = f"{course_id}-u{u}-l{le}-r{r}"
                cat.item(lesson, rid, "Video", slug=f"v{r}", sort=r, xp=r + 1, youtubeId=f"yt{r}")
            if le == 0 or ambiguous_quiz:
                cat.item(lesson, f"{course_id}-u{u}-quiz-{le}", "Quiz", slug="quiz-1", sort=99)
    if challenge:
        holder = cat.unit(f"{course_id}-holder", slug="holder", sort=units, **own)
        cat.item(holder, f"{course_id}-challenge", "CourseChallenge", slug="challenge", xp=50)
    return cat.records()


def store_course(
    store: BundleStore, recs: CourseRecords, *, built_at: dt.datetime | None = None
) -> BundleDoc:
    """Build and store ``recs`` at the course's next generation, as a rebuild would."""
    generation = store.next_generation(recs.course.sourcedId)
    when = built_at or dt.datetime.now(dt.UTC)
    result = build_bundle(recs, generation=generation, built_at=when)
    written = store.write(
        recs.course.sourcedId,
        result.doc,
        encode_bundle(result.doc),
        resource_ids=result.resource_ids,
    )
    assert written.stored
    return result.doc
