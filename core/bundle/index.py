"""Lookup maps over one bundle document: units, lessons, resources and (kind, slug) places."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.bundle.model import BundleDoc, Kind, LessonEntry, ResourceEntry, UnitEntry


@dataclass(frozen=True, slots=True)
class LocatedResource:
    """A resource entry and where it sits (both None for the course challenge)."""

    resource: ResourceEntry
    unit_slug: str | None
    lesson_slug: str | None


class BundleIndex:
    """Read-only maps built once per document; the first place in bundle order wins a lookup."""

    __slots__ = ("_by_kind_slug", "_lessons", "_resources", "_units", "doc")

    def __init__(self, doc: BundleDoc) -> None:
        self.doc = doc
        self._units: dict[str, UnitEntry] = {}
        self._lessons: dict[tuple[str, str], LessonEntry] = {}
        self._resources: dict[str, LocatedResource] = {}
        self._by_kind_slug: dict[tuple[str, str], list[LocatedResource]] = {}
        for unit in doc["units"]:
            unit_slug = unit["slug"]
            self._units.setdefault(unit_slug, unit)
            for lesson in unit["lessons"]:
                lesson_slug = lesson["slug"]
                self._lessons.setdefault((unit_slug, lesson_slug), lesson)
                for entry in lesson["resources"]:
                    self._add(LocatedResource(entry, unit_slug, lesson_slug))
        challenge = doc["courseChallenge"]
        if challenge is not None:
            self._add(LocatedResource(challenge, None, None))

    def _add(self, located: LocatedResource) -> None:
        entry = located.resource
        self._resources.setdefault(entry["resourceId"], located)
        self._by_kind_slug.setdefault((entry["kind"], entry["slug"]), []).append(located)

    @classmethod
    def from_doc(cls, doc: BundleDoc) -> BundleIndex:
        """Index ``doc`` (which must not be mutated afterwards)."""
        return cls(doc)

    def unit(self, unit_slug: str) -> UnitEntry | None:
        """The unit with this slug, or None."""
        return self._units.get(unit_slug)

    def lesson(self, unit_slug: str, lesson_slug: str) -> LessonEntry | None:
        """The lesson with this slug inside the unit with that slug, or None."""
        return self._lessons.get((unit_slug, lesson_slug))

    def resource(self, resource_id: str) -> LocatedResource | None:
        """Where a resource sits; a resource linked twice is found at its first place."""
        return self._resources.get(resource_id)

    def by_kind_slug(self, kind: Kind, slug: str) -> list[LocatedResource]:
        """Every place of a resource of this kind and slug, in bundle order (a copy)."""
        return list(self._by_kind_slug.get((kind, slug), ()))

    def summary(self) -> dict[str, Any]:
        """The course's line in ``GET /v1/subjects/{subject}/courses``."""
        doc = self.doc
        return {
            "courseId": doc["courseId"],
            "slug": doc["course"]["slug"],
            "title": doc["course"]["title"],
            "generation": doc["generation"],
            "totals": dict(doc["totals"]),
        }
