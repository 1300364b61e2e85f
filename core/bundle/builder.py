"""Build a course's bundle document from its OneRoster records.

A pure function of its inputs (time and generation passed in). Bad records never crash the build:
each active record that cannot be placed (bad metadata, an id outside the id rule, a field over
its size bound) is left out, counted in ``skipped`` and logged once; a whole bundle over its
byte cap is refused.
The hot path works on plain dicts grouped by parent; docs/bundle.md states every rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

import orjson

from core.bundle.kinds import ResourceFacts, read_resource
from core.bundle.limits import DEFAULT_LIMITS, BundleLimits
from core.bundle.model import SCHEMA_VERSION, BundleDoc, LessonEntry, ResourceEntry, UnitEntry
from core.bundle.paths import course_challenge_path, is_valid_slug, resource_path
from core.errors import BundleError, BundleTooLarge, CourseNotFound
from core.events.validate import is_valid_ref
from core.logging import get_logger
from core.oneroster.models import (
    ComponentResource,
    CourseComponent,
    CourseRecords,
    Record,
)

COMPONENT = "courseComponent"
COMPONENT_RESOURCE = "componentResource"

_by_order = itemgetter("sortOrder", "sourcedId")
_by_link_order = itemgetter("sortOrder", "componentResourceId")
_SHOWN_ID = 200  # a skipped record's id is cut to this length in logs and results


class CourseMetadataError(BundleError):
    """The course has no valid slug or subject, so nothing in it can have a canonical path."""


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    """One active record left out of the bundle, and why (a stable reason code)."""

    entity: str
    sourced_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class BuildResult:
    """The document plus what the store and logs need about how it was built."""

    doc: BundleDoc
    skipped: tuple[SkippedRecord, ...]
    resource_ids: frozenset[str]
    source_modified: str | None


def build_bundle(
    records: CourseRecords,
    *,
    generation: int,
    built_at: dt.datetime,
    limits: BundleLimits = DEFAULT_LIMITS,
) -> BuildResult:
    """The bundle of ``records.course``; raises only when the course itself is unusable.

    Raises CourseNotFound for a deleted course, CourseMetadataError when the course has no
    valid slug or subject (``khanSlug``/``subject`` metadata) or an oversize title, and
    BundleTooLarge when the document encodes to more than ``limits.max_bytes``.
    """
    course = records.course
    if not course.is_active:
        raise CourseNotFound(
            "course is deleted upstream", course_id=course.sourcedId, status=course.status
        )
    subject, course_slug = course.subject, course.slug
    invalid = [n for n, v in (("slug", course_slug), ("subject", subject)) if not is_valid_slug(v)]
    if invalid:
        raise CourseMetadataError(
            "course has no valid slug or subject; its pages cannot have paths",
            course_id=course.sourcedId,
            fields=invalid,
        )
    if len(course.title) > limits.title_chars:
        raise CourseMetadataError(
            "course title is longer than the title bound",
            course_id=course.sourcedId,
            fields=["title"],
            length=len(course.title),
            limit=limits.title_chars,
        )
    build = _Build(records, subject=subject, course_slug=course_slug, limits=limits)
    build.place_units()
    build.place_lessons()
    build.place_links()
    challenge = build.pick_challenge()

    units = sorted(build.unit_by_id.values(), key=_by_order)
    lessons = resources = xp = 0
    for unit in units:
        unit["lessons"].sort(key=_by_order)
        lessons += len(unit["lessons"])
        for lesson in unit["lessons"]:
            lesson["resources"].sort(key=_by_link_order)
            resources += len(lesson["resources"])
            xp += sum(entry["xp"] for entry in lesson["resources"])
    if challenge is not None:
        resources += 1
        xp += challenge["xp"]

    skipped = tuple(build.skipped[key] for key in sorted(build.skipped))
    doc: BundleDoc = {
        "schemaVersion": SCHEMA_VERSION,
        "courseId": course.sourcedId,
        "generation": generation,
        "builtAt": _rfc3339_millis(built_at),
        "course": {
            "sourcedId": course.sourcedId,
            "slug": course_slug,
            "title": course.title,
            "subject": subject,
        },
        "units": units,
        "courseChallenge": challenge,
        "totals": {"units": len(units), "lessons": lessons, "resources": resources, "xp": xp},
        "skipped": len(skipped),
    }
    build.log()
    size = len(orjson.dumps(doc))
    if size > limits.max_bytes:
        raise BundleTooLarge(
            f"the bundle encodes to {size} bytes, more than the cap of {limits.max_bytes} "
            "(CB_BUNDLE_MAX_BYTES)",
            course_id=course.sourcedId,
            size=size,
            limit=limits.max_bytes,
        )
    return BuildResult(
        doc=doc,
        skipped=skipped,
        resource_ids=frozenset(build.resource_ids),
        source_modified=_source_modified(records),
    )


class _Build:
    """The state of one build: records grouped by parent, placed entries and skips."""

    def __init__(
        self, records: CourseRecords, *, subject: str, course_slug: str, limits: BundleLimits
    ) -> None:
        self.course_id = course_id = records.course.sourcedId
        self.subject = subject
        self.course_slug = course_slug
        self.limits = limits
        self.skipped: dict[tuple[str, str], SkippedRecord] = {}
        self.log_context: dict[tuple[str, str], dict[str, str | None]] = {}
        self.xp_invalid: set[str] = set()
        self.components = {
            c.sourcedId: c for c in records.components if c.course.sourcedId == course_id
        }
        self.resources = {r.sourcedId: r for r in records.resources}
        self.facts: dict[str, ResourceFacts | str] = {}
        self.tops: list[CourseComponent] = []
        self.children: dict[str, list[CourseComponent]] = {}
        for component in self.components.values():
            if not component.is_active:
                continue
            if component.parent is None:
                self.tops.append(component)
            else:
                self.children.setdefault(component.parent.sourcedId, []).append(component)
        self.links: dict[str, list[ComponentResource]] = {}
        self.resource_ids: set[str] = set()
        for link in {cr.sourcedId: cr for cr in records.component_resources}.values():
            if not link.is_active:
                continue
            resource_id = link.resource.sourcedId
            reason = _link_id_problem(link)
            if reason is not None:
                # Never placed and never indexed: these ids would become Redis keys.
                self.skip(COMPONENT_RESOURCE, link.sourcedId, reason, resource_id=resource_id)
                continue
            self.links.setdefault(link.courseComponent.sourcedId, []).append(link)
            self.resource_ids.add(resource_id)
        self.unit_by_id: dict[str, UnitEntry] = {}
        self.lessonless: set[str] = set()
        self.lesson_by_id: dict[str, tuple[LessonEntry, UnitEntry]] = {}
        self.challenges: list[tuple[tuple[int, str, int, str], ComponentResource, ResourceFacts]]
        self.challenges = []

    def skip(
        self,
        entity: str,
        sourced_id: str,
        reason: str,
        *,
        unit_id: str | None = None,
        lesson_id: str | None = None,
        resource_id: str | None = None,
    ) -> None:
        """Leave a record out; the first reason given for it wins."""
        sourced_id = _clip(sourced_id)
        key = (entity, sourced_id)
        if key not in self.skipped:
            self.skipped[key] = SkippedRecord(entity, sourced_id, reason)
            self.log_context[key] = {
                "unit_id": None if unit_id is None else _clip(unit_id),
                "lesson_id": None if lesson_id is None else _clip(lesson_id),
                "resource_id": None if resource_id is None else _clip(resource_id),
            }

    def place_units(self) -> None:
        """Units are top-level components with active lessons; the rest may hold the challenge."""
        for component in self.tops:
            component_id = component.sourcedId
            if not is_valid_ref(component_id):
                self.skip(COMPONENT, component_id, "invalid_id", unit_id=component_id)
                continue
            if component_id not in self.children:
                self.lessonless.add(component_id)
                continue
            slug, reason = _component_slug(component, self.limits)
            if reason is not None:
                self.skip(COMPONENT, component_id, reason, unit_id=component_id)
                continue
            self.unit_by_id[component_id] = {
                "sourcedId": component_id,
                "slug": slug,
                "title": component.title,
                "sortOrder": component.sortOrder,
                "lessons": [],
            }

    def place_lessons(self) -> None:
        """Lessons are active components whose parent is a placed unit."""
        for parent_id, kids in self.children.items():
            unit = self.unit_by_id.get(parent_id)
            if unit is None:
                reason = self._orphan_reason(parent_id)
                for kid in kids:
                    self.skip(COMPONENT, kid.sourcedId, reason, unit_id=parent_id)
                continue
            for kid in kids:
                slug, bad = _component_slug(kid, self.limits)
                if bad is not None:
                    self.skip(COMPONENT, kid.sourcedId, bad, unit_id=parent_id)
                    continue
                lesson: LessonEntry = {
                    "sourcedId": kid.sourcedId,
                    "slug": slug,
                    "title": kid.title,
                    "sortOrder": kid.sortOrder,
                    "resources": [],
                }
                unit["lessons"].append(lesson)
                self.lesson_by_id[kid.sourcedId] = (lesson, unit)

    def place_links(self) -> None:
        """Each active link goes into its lesson, becomes a challenge candidate, or is skipped."""
        for component_id, links in self.links.items():
            placed = self.lesson_by_id.get(component_id)
            if placed is not None:
                self._place_in_lesson(links, *placed)
            elif component_id in self.lessonless:
                self._collect_challenges(self.components[component_id], links)
            else:
                reason = self._unplaced_reason(component_id)
                for link in links:
                    self.skip(
                        COMPONENT_RESOURCE,
                        link.sourcedId,
                        reason,
                        lesson_id=component_id,
                        resource_id=link.resource.sourcedId,
                    )

    def pick_challenge(self) -> ResourceEntry | None:
        """The first valid challenge by holder then link order; any other one is a duplicate."""
        challenge: ResourceEntry | None = None
        for _, link, facts in sorted(self.challenges, key=itemgetter(0)):
            if challenge is None:
                path = course_challenge_path(self.subject, self.course_slug, facts.slug)
                challenge = _entry(link, facts, path)
            else:
                self.skip(
                    COMPONENT_RESOURCE,
                    link.sourcedId,
                    "duplicate_course_challenge",
                    resource_id=link.resource.sourcedId,
                )
        return challenge

    def log(self) -> None:
        """One warning per left-out record and per defaulted xp, in a stable order."""
        if not self.skipped and not self.xp_invalid:
            return
        log = get_logger(__name__)
        for key in sorted(self.skipped):
            record = self.skipped[key]
            log.warning(
                "bundle record skipped",
                course_id=self.course_id,
                entity=record.entity,
                sourced_id=record.sourced_id,
                outcome="skipped",
                reason=record.reason,
                **self.log_context[key],
            )
        for resource_id in sorted(self.xp_invalid):
            log.warning(
                "bundle resource xp invalid, counted as 0",
                course_id=self.course_id,
                resource_id=resource_id,
                outcome="defaulted",
                reason="invalid_xp",
            )

    def _facts(self, resource_id: str) -> ResourceFacts | str:
        found = self.facts.get(resource_id)
        if found is None:
            resource = self.resources.get(resource_id)
            found = self.facts[resource_id] = read_resource(resource, self.limits)
            if not isinstance(found, str) and found.xp_invalid:
                self.xp_invalid.add(resource_id)
        return found

    def _place_in_lesson(
        self, links: list[ComponentResource], lesson: LessonEntry, unit: UnitEntry
    ) -> None:
        out = lesson["resources"]
        subject, course_slug = self.subject, self.course_slug
        unit_slug, lesson_slug = unit["slug"], lesson["slug"]
        for link in links:
            resource_id = link.resource.sourcedId
            facts = self._facts(resource_id)
            if isinstance(facts, str) or facts.kind == "course-challenge":
                self.skip(
                    COMPONENT_RESOURCE,
                    link.sourcedId,
                    facts if isinstance(facts, str) else "course_challenge_in_lesson",
                    unit_id=unit["sourcedId"],
                    lesson_id=lesson["sourcedId"],
                    resource_id=resource_id,
                )
                continue
            path = resource_path(
                subject, course_slug, unit_slug, lesson_slug, facts.kind, facts.slug
            )
            out.append(_entry(link, facts, path))

    def _collect_challenges(self, holder: CourseComponent, links: list[ComponentResource]) -> None:
        for link in links:
            facts = self._facts(link.resource.sourcedId)
            if isinstance(facts, str) or facts.kind != "course-challenge":
                self.skip(
                    COMPONENT_RESOURCE,
                    link.sourcedId,
                    facts if isinstance(facts, str) else "not_in_lesson",
                    unit_id=holder.sourcedId,
                    resource_id=link.resource.sourcedId,
                )
                continue
            key = (holder.sortOrder, holder.sourcedId, link.sortOrder, link.sourcedId)
            self.challenges.append((key, link, facts))

    def _orphan_reason(self, parent_id: str) -> str:
        parent = self.components.get(parent_id)
        if parent is None:
            return "parent_missing"
        if not parent.is_active:
            return "parent_inactive"
        if parent.parent is not None:
            return "parent_not_unit"
        return "parent_skipped"

    def _unplaced_reason(self, component_id: str) -> str:
        if component_id in self.unit_by_id:
            return "not_in_lesson"
        component = self.components.get(component_id)
        if component is None:
            return "component_missing"
        if not component.is_active:
            return "component_inactive"
        return "component_skipped"


def _entry(link: ComponentResource, facts: ResourceFacts, path: str) -> ResourceEntry:
    entry: ResourceEntry = {
        "componentResourceId": link.sourcedId,
        "resourceId": link.resource.sourcedId,
        "slug": facts.slug,
        "title": facts.title,
        "kind": facts.kind,
        "sortOrder": link.sortOrder,
        "xp": facts.xp,
        "path": path,
    }
    if facts.youtube_id is not None:
        entry["youtubeId"] = facts.youtube_id
    if facts.question_count is not None:
        entry["questionCount"] = facts.question_count
    if facts.url is not None:
        entry["url"] = facts.url
    return entry


def _component_slug(component: CourseComponent, limits: BundleLimits) -> tuple[str, str | None]:
    """The component's slug, or a reason code when it cannot be placed (id, slug, title)."""
    if not is_valid_ref(component.sourcedId):
        return "", "invalid_id"
    slug = component.meta("khanSlug")
    if slug is None:
        return "", "missing_slug"
    if not is_valid_slug(slug):
        return "", "invalid_slug"
    if len(component.title) > limits.title_chars:
        return "", "title_too_long"
    return str(slug), None


def _link_id_problem(link: ComponentResource) -> str | None:
    """Why a link's own id or its resource's id cannot be used, or None."""
    if not is_valid_ref(link.sourcedId):
        return "invalid_id"
    if not is_valid_ref(link.resource.sourcedId):
        return "resource_invalid_id"
    return None


def _clip(value: str) -> str:
    """An id as logged and reported: ids past any valid length are cut (they may be huge)."""
    if len(value) <= _SHOWN_ID:
        return value
    return value[:_SHOWN_ID] + "…"


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _rfc3339_millis(moment: dt.datetime) -> str:
    moment = _utc(moment)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _source_modified(records: CourseRecords) -> str | None:
    """Latest ``dateLastModified`` over every record given (a delete is a change too)."""
    groups: tuple[Sequence[Record], ...] = (
        (records.course,),
        records.components,
        records.component_resources,
        records.resources,
    )
    moments = [r.dateLastModified for g in groups for r in g if r.dateLastModified is not None]
    if not moments:
        return None
    try:
        latest = max(moments)
    except TypeError:  # naive and aware mixed: naive ones are UTC
        latest = max(_utc(moment) for moment in moments)
    return f"{_utc(latest):%Y-%m-%dT%H:%M:%S.%f}Z"
