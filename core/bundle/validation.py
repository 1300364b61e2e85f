"""Validation before the swap: is a new build of a course safe to publish over the one it replaces?

Pure. A bundle is reduced to its ``BundleShape`` (ids only: units, lessons under units, links
under lessons), stored beside each bundle so the check never decodes the old document. Each rule
is one small function returning a named ``Finding``; ``validate`` runs them all. A loss counts
only when no delete event seen since the last publish explains it (``Removals``): a deleted unit
explains its lessons and links, a deleted lesson its links, a deleted resource its links.

Rules (thresholds in ``Rules``, settings ``CB_PUBLISH_*``):

    all_units        the old bundle had units, the new one has none
    lessons_lost     more than ``max_lesson_loss`` of the old lessons are gone, unexplained
    resources_lost   more than ``max_resource_loss`` of the old links are gone, unexplained
    unit_links_lost  a unit that had links keeps none of them, unexplained
    orphan_lessons   a lesson of the old bundle is now skipped because its unit is not live
    duplicate_ids    a unit, lesson or link id appears twice in the new bundle
    no_slug          the new bundle has no course slug

A first build (no old shape) is never held.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from core.bundle.model import BundleDoc

# Skip reasons of the builder that mean "this lesson's unit is not live".
ORPHAN_REASONS: frozenset[str] = frozenset({"parent_missing", "parent_inactive", "parent_not_unit"})
REASON_ORDER: tuple[str, ...] = (
    "no_slug",
    "duplicate_ids",
    "all_units",
    "unit_links_lost",
    "lessons_lost",
    "resources_lost",
    "orphan_lessons",
)


_CONTENT_START = b',"course":'


def content_digest(raw_json: bytes) -> str:
    """A digest of a bundle's content: its JSON after ``generation`` and ``builtAt``.

    Two reads that built the same course give the same digest, whatever their generations.
    The builder writes ``course`` right after ``builtAt``, so everything from there is content.
    SHA-1 (hardware-accelerated, twice blake2b's speed here): it tells reads of one course
    apart, it is not a security boundary.
    """
    start = raw_json.find(_CONTENT_START)
    view = memoryview(raw_json)[max(0, start) :]
    return hashlib.sha1(view, usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class Rules:
    """Thresholds: a share of the old bundle lost without explanation, above which it holds."""

    max_lesson_loss: float = 0.5
    max_resource_loss: float = 0.5


DEFAULT_RULES = Rules()


@dataclass(frozen=True, slots=True)
class BundleShape:
    """The ids of one bundle: ``lessons`` lesson -> unit, ``links`` link -> "lesson SEP resource".

    A link's place is one string (``place``/``placed``) so a stored shape decodes with no per-entry
    work and "nothing moved" is one C-speed comparison of dict item views.
    """

    slug: str
    units: tuple[str, ...]
    lessons: Mapping[str, str]
    links: Mapping[str, str]
    duplicates: bool = False

    @classmethod
    def of(cls, doc: BundleDoc) -> BundleShape:
        """The shape of a bundle document (one pass over it)."""
        units: list[str] = []
        lessons: dict[str, str] = {}
        links: dict[str, str] = {}
        dup = False
        for unit in doc["units"]:
            unit_id = unit["sourcedId"]
            units.append(unit_id)
            for lesson in unit["lessons"]:
                lesson_id = lesson["sourcedId"]
                dup = dup or lesson_id in lessons
                lessons[lesson_id] = unit_id
                for res in lesson["resources"]:
                    link_id = res["componentResourceId"]
                    dup = dup or link_id in links
                    links[link_id] = place(lesson_id, res["resourceId"])
        dup = dup or len(set(units)) != len(units) or not set(units).isdisjoint(lessons)
        return cls(doc["course"]["slug"], tuple(units), lessons, links, dup)

    def dumps(self) -> bytes:
        """Compact JSON stored beside the bundle (``shape`` field)."""
        return orjson.dumps(
            {
                "s": self.slug,
                "u": list(self.units),
                "l": self.lessons,
                "r": self.links,
                "d": self.duplicates,
            }
        )

    @classmethod
    def loads(cls, raw: bytes) -> BundleShape:
        """The stored shape; ``ValueError`` when unreadable."""
        try:
            data: Any = orjson.loads(raw)
            return cls(
                str(data["s"]),
                tuple(map(str, data["u"])),
                _strings(data["l"]),
                _strings(data["r"]),
                bool(data.get("d", False)),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ValueError(f"unreadable bundle shape: {exc}") from exc


SEP = "\x1f"  # never in an id (the id rule allows [A-Za-z0-9._:-])


def place(lesson_id: str, resource_id: str) -> str:
    """A link's place in a shape: its lesson and resource as one string."""
    return f"{lesson_id}{SEP}{resource_id}"


def placed(value: str) -> tuple[str, str]:
    """(lesson id, resource id) of a link's place."""
    lesson_id, _, resource_id = value.partition(SEP)
    return lesson_id, resource_id


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TypeError("not an object")
    return value


@dataclass(frozen=True, slots=True)
class Removals:
    """Deletions seen in events since the last publish: component, link and resource ids."""

    components: frozenset[str] = frozenset()
    links: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()

    @classmethod
    def from_members(cls, members: Iterable[str]) -> Removals:
        """From the stored set's ``kind:ID`` members (unknown kinds ignored)."""
        found: dict[str, set[str]] = {"component": set(), "link": set(), "resource": set()}
        for member in members:
            kind, _, sourced_id = member.partition(":")
            if kind in found and sourced_id:
                found[kind].add(sourced_id)
        return cls(
            frozenset(found["component"]), frozenset(found["link"]), frozenset(found["resource"])
        )

    def explains_unit(self, unit_id: str) -> bool:
        return unit_id in self.components

    def explains_lesson(self, lesson_id: str, unit_id: str) -> bool:
        return lesson_id in self.components or unit_id in self.components

    def explains_link(self, link_id: str, lesson_id: str, resource_id: str, unit_id: str) -> bool:
        return (
            link_id in self.links
            or resource_id in self.resources
            or lesson_id in self.components
            or unit_id in self.components
        )


NO_REMOVALS = Removals()


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule that failed: a stable ``reason`` code and the numbers behind it."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """Findings of one validation; ``ok`` when there are none."""

    findings: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def reason(self) -> str:
        """The first finding's reason (rules in ``REASON_ORDER``); empty when ok."""
        return self.findings[0].reason if self.findings else ""

    @property
    def detail(self) -> str:
        return "; ".join(f"{f.reason}: {f.detail}" for f in self.findings)


PUBLISH = Verdict()


@dataclass(frozen=True, slots=True)
class _Losses:
    """What the new shape lost from the old one, with no delete event to explain it."""

    lessons: int
    links: int
    empty_units: tuple[str, ...]
    orphans: tuple[str, ...]


def validate(
    new: BundleShape,
    old: BundleShape | None,
    *,
    removals: Removals = NO_REMOVALS,
    skipped: Iterable[tuple[str, str, str]] = (),
    rules: Rules = DEFAULT_RULES,
) -> Verdict:
    """Check a new build against the bundle it would replace; ``old`` None: a first build.

    ``skipped`` are the builder's ``(entity, sourced_id, reason)`` records.
    """
    if old is None:
        return PUBLISH
    if _nothing_lost(new, old):
        structural = [f for f in (_no_slug(new), _duplicate_ids(new)) if f is not None]
        return Verdict(tuple(structural)) if structural else PUBLISH
    losses = _losses(new, old, removals, skipped)
    findings = [
        f
        for f in (
            _no_slug(new),
            _duplicate_ids(new),
            _all_units(new, old, removals),
            _unit_links(losses),
            _share("lessons_lost", losses.lessons, len(old.lessons), rules.max_lesson_loss),
            _share("resources_lost", losses.links, len(old.links), rules.max_resource_loss),
            _orphans(losses),
        )
        if f is not None
    ]
    return Verdict(tuple(findings)) if findings else PUBLISH


def _nothing_lost(new: BundleShape, old: BundleShape) -> bool:
    """Every old unit, lesson (under its unit) and link (in its place) is still there.

    The common rebuild; compared on dict item views, so it costs a few microseconds.
    """
    return (
        new.links.items() >= old.links.items()
        and new.lessons.items() >= old.lessons.items()
        and set(new.units) >= set(old.units)
    )


def _losses(
    new: BundleShape,
    old: BundleShape,
    removals: Removals,
    skipped: Iterable[tuple[str, str, str]],
) -> _Losses:
    new_lessons, new_links = new.lessons, new.links
    lessons = 0
    for lesson_id, unit_id in old.lessons.items():
        if lesson_id not in new_lessons and not removals.explains_lesson(lesson_id, unit_id):
            lessons += 1
    links = 0
    had: dict[str, int] = {}
    kept: dict[str, int] = {}
    explained_units: set[str] = set()
    for link_id, where in old.links.items():
        lesson_id, resource_id = placed(where)
        unit_id = old.lessons.get(lesson_id, "")
        had[unit_id] = had.get(unit_id, 0) + 1
        if link_id in new_links:
            continue
        if removals.explains_link(link_id, lesson_id, resource_id, unit_id):
            explained_units.add(unit_id)
        else:
            links += 1
    new_units = set(new.units)
    for where in new_links.values():
        unit_now = new.lessons.get(placed(where)[0], "")
        kept[unit_now] = kept.get(unit_now, 0) + 1
    empty = tuple(
        u
        for u in old.units
        if had.get(u) and u in new_units and not kept.get(u) and u not in explained_units
    )
    orphans = tuple(
        sourced_id
        for entity, sourced_id, reason in skipped
        if entity == "courseComponent"
        and reason in ORPHAN_REASONS
        and sourced_id in old.lessons
        and not removals.explains_lesson(sourced_id, old.lessons[sourced_id])
    )
    return _Losses(lessons, links, empty, orphans)


def _no_slug(new: BundleShape) -> Finding | None:
    return None if new.slug else Finding("no_slug", "the course has no slug")


def _duplicate_ids(new: BundleShape) -> Finding | None:
    if not new.duplicates and len(set(new.units)) == len(new.units):
        return None
    return Finding("duplicate_ids", "a unit, lesson or link id appears twice")


def _all_units(new: BundleShape, old: BundleShape, removals: Removals) -> Finding | None:
    if not old.units or new.units:
        return None
    if all(removals.explains_unit(u) for u in old.units):
        return None
    return Finding("all_units", f"0 of {len(old.units)} units left")


def _unit_links(losses: _Losses) -> Finding | None:
    if not losses.empty_units:
        return None
    shown = ", ".join(losses.empty_units[:5])
    return Finding("unit_links_lost", f"{len(losses.empty_units)} units lost every link ({shown})")


def _share(reason: str, lost: int, total: int, limit: float) -> Finding | None:
    if total == 0 or lost / total <= limit:
        return None
    return Finding(reason, f"{lost} of {total} lost without a delete event (limit {limit:.0%})")


def _orphans(losses: _Losses) -> Finding | None:
    if not losses.orphans:
        return None
    shown = ", ".join(losses.orphans[:5])
    return Finding(
        "orphan_lessons", f"{len(losses.orphans)} lessons lost their live unit ({shown})"
    )
