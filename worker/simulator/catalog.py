"""The simulator's seeded synthetic OneRoster catalog: raw record dicts per collection, mutations.

Layout of every generated course (ids are zero-padded and grouped by prefix):

- ``course-001`` with ``metadata.khanSlug`` and ``metadata.subject``;
- units ``unit-001-01`` (components with ``parent: null``);
- lessons ``lesson-001-01-01`` (components whose ``parent`` is their unit), holding videos,
  exercises and articles through component resources ``cr-000001``;
- each quiz and the unit test sits in its own *assessment lesson* ``assess-001-01-quiz-1`` /
  ``assess-001-01-unit-test``: a lesson-like component of the unit (slug ``quiz-1``, ``quiz-2``,
  ..., ``unit-test``; ``metadata.khanComponentType`` is ``Quiz`` / ``UnitTest``) placed after the
  lessons it covers and linked to one resource, so canonical paths are
  ``/{subject}/{course}/{unit}/quiz-1/quiz/{slug}`` and ``.../unit-test/test/{slug}``;
- one course challenge: a top-level component ``challenge-001`` (slug ``course-challenge``, no
  lessons, after every unit) linked straight to the ``CourseChallenge`` resource;
- gradebook results ``ar-000001`` for ``student-001``... on line items ``{resourceId}_ali``.

Anomalies (shared resources, shared slugs, missing metadata, soft deletes, a deleted course) never
touch the first course when there are three courses or more: ``facts.clean_course_id`` names it.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from core.errors import BundlesError

Rec = dict[str, Any]

ROSTERING = "/ims/oneroster/rostering/v1p2"
RESOURCES = "/ims/oneroster/resources/v1p2"
GRADEBOOK = "/ims/oneroster/gradebook/v1p2"

COLLECTIONS: tuple[str, ...] = (
    "courses",
    "courseComponents",
    "componentResources",
    "resources",
    "assessmentResults",
)
SINGULAR: dict[str, str] = {
    "courses": "course",
    "courseComponents": "courseComponent",
    "componentResources": "componentResource",
    "resources": "resource",
    "assessmentResults": "assessmentResult",
}
# Where each collection's records live, for ``href`` values.
COLLECTION_PATH: dict[str, str] = {
    "courses": f"{ROSTERING}/courses",
    "courseComponents": f"{ROSTERING}/courses/components",
    "componentResources": f"{ROSTERING}/courses/component-resources",
    "resources": f"{RESOURCES}/resources",
    "assessmentResults": f"{GRADEBOOK}/assessmentResults",
}
# Reference fields and the type of record they point to (used to add href/type on writes).
REF_FIELDS: dict[str, tuple[str, str]] = {
    "course": ("course", f"{ROSTERING}/courses"),
    "parent": ("courseComponent", f"{ROSTERING}/courses/components"),
    "courseComponent": ("courseComponent", f"{ROSTERING}/courses/components"),
    "resource": ("resource", f"{RESOURCES}/resources"),
    "assessmentLineItem": ("assessmentLineItem", f"{GRADEBOOK}/assessmentLineItems"),
    "student": ("user", f"{ROSTERING}/users"),
    "org": ("org", f"{ROSTERING}/orgs"),
}

_REF_BASE: dict[str, str] = dict(REF_FIELDS.values())

BASE_TIME = dt.datetime(2025, 1, 6, 9, 0, tzinfo=dt.UTC)


class CatalogError(BundlesError):
    """A catalog mutation was refused."""


class RecordNotFound(CatalogError, KeyError):
    """No record with this sourcedId in the collection."""


class RecordExists(CatalogError):
    """A create named a sourcedId that already exists."""


class InvalidRecord(CatalogError, ValueError):
    """A written record is not an object or contradicts its URL."""


@dataclass(frozen=True, slots=True)
class CatalogConfig:
    """Shape of the synthetic catalog; ranges are inclusive ``(low, high)``."""

    seed: int = 42
    courses: int = 20
    units: tuple[int, int] = (8, 16)
    lessons: tuple[int, int] = (1, 12)
    resources: tuple[int, int] = (1, 13)
    quizzes: tuple[int, int] = (0, 4)
    video_share: float = 0.6
    exercise_share: float = 0.3  # the rest are articles
    subjects: tuple[str, ...] = ("math", "science", "computing", "economics", "humanities", "ela")
    deleted_share: float = 0.02  # of lessons, component resources and resources (not course 1)
    deleted_courses: int = 1  # the last courses are tobedeleted (only with >= 3 courses)
    shared_resources: int = 3  # resources also linked into a lesson of another course
    shared_slugs: int = 3  # lessons where an exercise takes the slug of a video beside it
    missing_metadata: int = 4  # records with missing or invalid metadata (cycling variants)
    students: int = 6
    results_per_student: int = 6
    line_item_suffix: str = "_ali"
    # "legacy": references carry only sourcedId and a lesson names its unit ``courseComponent``
    # (not ``parent``), as older Timeback servers do; filter by ``courseComponent.sourcedId``.
    dialect: Literal["official", "legacy"] = "official"


def single_course_config(resources: int = 500, *, seed: int = 42) -> CatalogConfig:
    """One clean course of about ``resources`` lesson resources (plus assessments): benchmarks."""
    units = max(1, min(20, resources // 50))
    lessons = 5
    per_lesson = max(1, round(resources / (units * lessons)))
    return CatalogConfig(
        seed=seed,
        courses=1,
        units=(units, units),
        lessons=(lessons, lessons),
        resources=(per_lesson, per_lesson),
        quizzes=(1, 1),
        deleted_share=0.0,
        deleted_courses=0,
        shared_resources=0,
        shared_slugs=0,
        missing_metadata=0,
    )


@dataclass(slots=True)
class CatalogFacts:
    """What the generator planted, so tests and demos can find it without searching."""

    clean_course_id: str | None = None
    deleted_course_ids: list[str] = field(default_factory=list)
    shared_resources: dict[str, list[str]] = field(default_factory=dict)  # resource -> courses
    shared_slugs: list[dict[str, str]] = field(default_factory=list)
    missing_metadata: list[dict[str, str]] = field(default_factory=list)
    deleted: dict[str, list[str]] = field(default_factory=dict)  # collection -> ids

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "cleanCourseId": self.clean_course_id,
            "deletedCourseIds": self.deleted_course_ids,
            "sharedResources": self.shared_resources,
            "sharedSlugs": self.shared_slugs,
            "missingMetadata": self.missing_metadata,
            "deleted": self.deleted,
        }


def iso_ms(when: dt.datetime) -> str:
    """ISO 8601 UTC with milliseconds and ``Z``, as OneRoster servers write ``dateLastModified``."""
    return (
        when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    )


def parse_iso(value: str) -> dt.datetime:
    """Inverse of :func:`iso_ms` (accepts any ISO 8601 form Python reads)."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def ref(kind: str, sourced_id: str) -> Rec:
    """A reference object for a record of ``kind`` (a key of ``REF_FIELDS``' types)."""
    base = _REF_BASE[kind]
    return {"sourcedId": sourced_id, "href": f"{base}/{sourced_id}", "type": kind}


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Catalog:
    """All records, pre-indexed by sourcedId; thread-safe; writes replace records (never mutate).

    Every mutation bumps the record's ``dateLastModified`` to a time strictly after any the catalog
    has handed out, and bumps the collection's ``version`` (the app caches filtered lists by it).
    """

    def __init__(
        self,
        collections: Mapping[str, Iterable[Rec]],
        *,
        config: CatalogConfig | None = None,
        facts: CatalogFacts | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.config = config or CatalogConfig()
        self.facts = facts or CatalogFacts()
        self._clock = clock
        self._lock = threading.RLock()
        self._data: dict[str, dict[str, Rec]] = {name: {} for name in COLLECTIONS}
        self._versions: dict[str, int] = dict.fromkeys(COLLECTIONS, 0)
        self._snapshots: dict[str, tuple[int, list[Rec]]] = {}
        self._last_modified = BASE_TIME
        for name, records in collections.items():
            store = self._store(name)
            for record in records:
                store[record["sourcedId"]] = record
                self._last_modified = max(
                    self._last_modified, parse_iso(record["dateLastModified"])
                )

    # --- reads -----------------------------------------------------------------------------
    def get(self, collection: str, sourced_id: str) -> Rec | None:
        """One record by id, or None."""
        return self._store(collection).get(sourced_id)

    def records(self, collection: str) -> list[Rec]:
        """A snapshot of the collection in insertion order (cached until the next mutation)."""
        return self.snapshot(collection)[1]

    def snapshot(self, collection: str) -> tuple[int, list[Rec]]:
        """``(version, records)`` taken together; treat the list as read-only."""
        with self._lock:
            version = self._versions[collection]
            cached = self._snapshots.get(collection)
            if cached is not None and cached[0] == version:
                return cached
            snapshot = (version, list(self._store(collection).values()))
            self._snapshots[collection] = snapshot
            return snapshot

    def version(self, collection: str) -> int:
        """Grows with every mutation of the collection."""
        return self._versions[collection]

    def count(self, collection: str, *, active_only: bool = False) -> int:
        """How many records (optionally only ``active`` ones) the collection holds."""
        records = self.records(collection)
        if not active_only:
            return len(records)
        return sum(1 for r in records if r.get("status") == "active")

    def course_by_slug(self, slug: str) -> Rec | None:
        """The first course whose ``metadata.khanSlug`` is ``slug``."""
        for course in self.records("courses"):
            if (course.get("metadata") or {}).get("khanSlug") == slug:
                return course
        return None

    def components_of(self, course_id: str) -> list[Rec]:
        """Every component (units, lessons, challenge components) of a course, any status."""
        return [
            c
            for c in self.records("courseComponents")
            if (c.get("course") or {}).get("sourcedId") == course_id
        ]

    def component_resources_of(self, course_id: str) -> list[Rec]:
        """Every component resource linked into a component of the course, any status."""
        ids = {c["sourcedId"] for c in self.components_of(course_id)}
        return [
            cr
            for cr in self.records("componentResources")
            if (cr.get("courseComponent") or {}).get("sourcedId") in ids
        ]

    def resources_of(self, course_id: str) -> list[Rec]:
        """Every resource linked into the course, any status, in first-link order."""
        seen: dict[str, Rec] = {}
        for cr in self.component_resources_of(course_id):
            rid = (cr.get("resource") or {}).get("sourcedId")
            if not isinstance(rid, str) or rid in seen:
                continue
            record = self.get("resources", rid)
            if record is not None:
                seen[rid] = record
        return list(seen.values())

    def summary(self) -> dict[str, Any]:
        """Ids, slugs and counts per course plus collection counts, for demos and tests."""
        courses = []
        for course in self.records("courses"):
            cid = course["sourcedId"]
            comps = self.components_of(cid)
            meta = course.get("metadata") or {}
            courses.append(
                {
                    "sourcedId": cid,
                    "slug": meta.get("khanSlug"),
                    "subject": meta.get("subject"),
                    "title": course.get("title"),
                    "status": course.get("status"),
                    "units": sum(
                        1
                        for c in comps
                        if _parent_of(c) is None
                        and (c.get("metadata") or {}).get("khanComponentType") != "CourseChallenge"
                    ),
                    "lessons": sum(1 for c in comps if _parent_of(c) is not None),
                    "componentResources": len(self.component_resources_of(cid)),
                }
            )
        return {
            "seed": self.config.seed,
            "counts": {
                name: {"total": self.count(name), "active": self.count(name, active_only=True)}
                for name in COLLECTIONS
            },
            "courses": courses,
            "facts": self.facts.as_dict(),
        }

    # --- writes ----------------------------------------------------------------------------
    def create(self, collection: str, record: Rec) -> Rec:
        """Add a new record (``sourcedId`` generated when absent); fills status, metadata, refs."""
        if not isinstance(record, dict):
            raise InvalidRecord("record must be a JSON object", collection=collection)
        with self._lock:
            store = self._store(collection)
            sourced_id = record.get("sourcedId") or self._new_id(collection)
            if sourced_id in store:
                raise RecordExists("record exists", collection=collection, sourced_id=sourced_id)
            new = {"sourcedId": sourced_id, "status": "active", "metadata": {}, **record}
            new["sourcedId"] = sourced_id
            return self._put(collection, _with_full_refs(new))

    def upsert(self, collection: str, sourced_id: str, patch: Rec) -> tuple[Rec, bool]:
        """Merge ``patch`` into the record (``metadata`` merged one level), or create it.

        Answers the stored record and whether it was created.
        """
        if not isinstance(patch, dict):
            raise InvalidRecord("record must be a JSON object", collection=collection)
        if patch.get("sourcedId", sourced_id) != sourced_id:
            raise InvalidRecord(
                "sourcedId in body differs from the URL",
                collection=collection,
                sourced_id=sourced_id,
                body_sourced_id=patch.get("sourcedId"),
            )
        with self._lock:
            current = self.get(collection, sourced_id)
            if current is None:
                return self.create(collection, {**patch, "sourcedId": sourced_id}), True
            merged = {**current, **patch}
            if isinstance(patch.get("metadata"), dict) and isinstance(
                current.get("metadata"), dict
            ):
                merged["metadata"] = {**current["metadata"], **patch["metadata"]}
            return self._put(collection, _with_full_refs(merged)), False

    def update(self, collection: str, sourced_id: str, **fields: Any) -> Rec:
        """Merge ``fields`` into an existing record (convenience for tests and demos)."""
        with self._lock:
            if self.get(collection, sourced_id) is None:
                raise RecordNotFound("no such record", collection=collection, sourced_id=sourced_id)
            return self.upsert(collection, sourced_id, fields)[0]

    def soft_delete(self, collection: str, sourced_id: str) -> Rec:
        """Set ``status`` to ``tobedeleted``; the record stays in its collection."""
        with self._lock:
            current = self.get(collection, sourced_id)
            if current is None:
                raise RecordNotFound("no such record", collection=collection, sourced_id=sourced_id)
            return self._put(collection, {**current, "status": "tobedeleted"})

    # --- internals -------------------------------------------------------------------------
    def _store(self, collection: str) -> dict[str, Rec]:
        try:
            return self._data[collection]
        except KeyError:
            raise CatalogError("unknown collection", collection=collection) from None

    def _put(self, collection: str, record: Rec) -> Rec:
        record["dateLastModified"] = self._next_timestamp()
        self._data[collection][record["sourcedId"]] = record
        self._versions[collection] += 1
        return record

    def _next_timestamp(self) -> str:
        now = self._clock()
        floor = self._last_modified + dt.timedelta(milliseconds=1)
        self._last_modified = max(now.replace(microsecond=now.microsecond // 1000 * 1000), floor)
        return iso_ms(self._last_modified)

    def _new_id(self, collection: str) -> str:
        stem = SINGULAR[collection]
        n = len(self._data[collection]) + 1
        while f"{stem}-new-{n}" in self._data[collection]:
            n += 1
        return f"{stem}-new-{n}"


def _parent_of(component: Rec) -> Any:
    """The parent reference, read as the client does (``parent`` first, legacy second)."""
    return component.get("parent") or component.get("courseComponent")


def _with_full_refs(record: Rec) -> Rec:
    """Give reference fields that carry only ``sourcedId`` their ``href`` and ``type``."""
    for name, (kind, base) in REF_FIELDS.items():
        value = record.get(name)
        if isinstance(value, dict) and isinstance(value.get("sourcedId"), str):
            record[name] = {"href": f"{base}/{value['sourcedId']}", "type": kind, **value}
    return record


def generate_catalog(cfg: CatalogConfig | None = None) -> Catalog:
    """A fresh catalog for ``cfg``; the same config always gives the same records."""
    from worker.simulator.generator import build  # noqa: PLC0415 - generator imports this module

    return build(cfg or CatalogConfig())
