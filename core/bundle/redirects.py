"""Resolve an assessment page's URL parts to its canonical path, from one course's bundle."""

from __future__ import annotations

from typing import Literal

from core.bundle.index import BundleIndex
from core.errors import AmbiguousRedirect, LookupMiss
from core.logging import get_logger

AssessmentKind = Literal["quiz", "unit-test", "course-challenge"]


def resolve_assessment_redirect(
    index: BundleIndex,
    *,
    subject: str,
    course_slug: str,
    unit_slug: str | None,
    kind: AssessmentKind,
    slug: str,
) -> str:
    """The one canonical path for the assessment; an empty ``unit_slug`` counts as omitted.

    Raises LookupMiss when nothing matches (another course or subject, a unit given for a course
    challenge or missing for a quiz or unit test) and AmbiguousRedirect with every candidate
    path when the slug sits in more than one place of the unit.
    """
    course = index.doc["course"]
    context = {
        "subject": subject,
        "course_slug": course_slug,
        "unit_slug": unit_slug,
        "kind": kind,
        "slug": slug,
    }
    if course["subject"] != subject or course["slug"] != course_slug:
        raise LookupMiss(
            "assessment redirect: not this course", reason="course_mismatch", **context
        )
    if kind == "course-challenge":
        if unit_slug:
            raise LookupMiss(
                "assessment redirect: a course challenge has no unit",
                reason="unit_given",
                **context,
            )
        challenge = index.doc["courseChallenge"]
        if challenge is None or challenge["slug"] != slug:
            raise LookupMiss(
                "assessment redirect: no such course challenge", reason="not_found", **context
            )
        return challenge["path"]
    if kind not in ("quiz", "unit-test"):
        raise LookupMiss("assessment redirect: unknown kind", reason="unknown_kind", **context)
    if not unit_slug:
        raise LookupMiss("assessment redirect: unit missing", reason="unit_missing", **context)
    paths = list(
        dict.fromkeys(
            located.resource["path"]
            for located in index.by_kind_slug(kind, slug)
            if located.unit_slug == unit_slug
        )
    )
    if not paths:
        raise LookupMiss("assessment redirect: no such assessment", reason="not_found", **context)
    if len(paths) > 1:
        get_logger(__name__).warning(
            "assessment redirect ambiguous",
            course_id=index.doc["courseId"],
            outcome="ambiguous",
            candidates=len(paths),
            **context,
        )
        raise AmbiguousRedirect(
            "assessment redirect: slug matches several places", candidates=paths, **context
        )
    return paths[0]
