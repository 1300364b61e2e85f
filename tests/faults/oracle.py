"""What "right" means after a fault: every stored bundle equals a fresh build from OneRoster.

``Oracle`` builds each course afresh from the simulator (the generation and build time left
out) and compares with what the store holds. ``Mutator`` makes the course builder's changes
(a new title on a unit, lesson or resource, then the matching event) and remembers the last
value of each record, so that a change the pipeline dropped can be counted as lost.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from core.bundle.builder import build_bundle
from core.bundle.store import BundleStore
from core.errors import CourseNotFound
from core.oneroster.client import OneRosterClient
from core.oneroster.fetch import fetch_course_records
from core.settings import Settings
from worker.simulator.catalog import Catalog

EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def normalize(doc: Any) -> Any:
    """A bundle without what differs between two builds of the same data."""
    if doc is None:
        return None
    return {k: v for k, v in dict(doc).items() if k not in ("generation", "builtAt")}


def titles_in(doc: Any) -> dict[tuple[str, str], str]:
    """Title of every unit, lesson and resource of a bundle, keyed by (kind, id)."""
    found: dict[tuple[str, str], str] = {}
    if doc is None:
        return found
    for unit in doc["units"]:
        found[("unit", unit["sourcedId"])] = unit["title"]
        for lesson in unit["lessons"]:
            found[("lesson", lesson["sourcedId"])] = lesson["title"]
            for res in lesson["resources"]:
                found[("resource", res["resourceId"])] = res["title"]
    challenge = doc.get("courseChallenge")
    if challenge is not None:
        found[("resource", challenge["resourceId"])] = challenge["title"]
    return found


class Oracle:
    """Fresh builds straight from OneRoster, and comparisons with the store."""

    def __init__(self, settings: Settings, course_ids: Iterable[str]) -> None:
        self.settings = settings
        self.course_ids = sorted(course_ids)

    def fresh(self, course_id: str) -> Any:
        """The course as a rebuild now would store it (normalized), or None if it is gone."""
        with OneRosterClient(self.settings) as client:
            try:
                records = fetch_course_records(client, course_id)
                return normalize(build_bundle(records, generation=0, built_at=EPOCH).doc)
            except CourseNotFound:
                return None

    def expected(self) -> dict[str, Any]:
        return {c: self.fresh(c) for c in self.course_ids}

    def mismatched(self, store: BundleStore, expected: dict[str, Any]) -> list[str]:
        """Courses whose stored bundle differs from ``expected``."""
        return [c for c, want in expected.items() if normalize(store.read_doc(c)) != want]

    def wait_converged(
        self, store: BundleStore, *, timeout: float, on_timeout: Callable[[], str] = lambda: ""
    ) -> float:
        """Seconds until every course equals a fresh build; AssertionError after ``timeout``."""
        expected = self.expected()
        started = time.monotonic()
        while True:
            try:
                wrong = self.mismatched(store, expected)
            except OSError:
                wrong = ["<redis unavailable>"]
            if not wrong:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(
                    f"not converged after {timeout:.0f}s; courses differing from a fresh build: "
                    f"{wrong}\n{on_timeout()}"
                )
            time.sleep(0.2)


@dataclass(frozen=True, slots=True)
class Target:
    """A record that appears in a built bundle and can be renamed."""

    kind: str  # unit | lesson | resource
    record_id: str
    course_ids: tuple[str, ...]

    @property
    def collection(self) -> str:
        return "resources" if self.kind == "resource" else "courseComponents"


def targets_of(expected: dict[str, Any]) -> list[Target]:
    """Every unit, lesson and resource of the expected bundles, with the courses holding it."""
    holders: dict[tuple[str, str], list[str]] = {}
    for course_id, doc in sorted(expected.items()):
        for key in titles_in(doc):
            holders.setdefault(key, []).append(course_id)
    return [Target(k, rid, tuple(cs)) for (k, rid), cs in sorted(holders.items())]


def make_event(
    kind: str, subject: str, course_id: str | None, *, event_id: str | None = None
) -> dict[str, Any]:
    """A valid events.md envelope."""
    data: dict[str, Any] = {} if course_id is None else {"courseId": course_id}
    return {
        "specversion": "1.0",
        "id": event_id or f"faults-{uuid.uuid4().hex}",
        "source": "faults-suite",
        "type": f"oneroster.{kind}",
        "subject": subject,
        "time": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
    }


@dataclass
class Mutator:
    """Renames records in the simulator's catalog and builds the events that announce it."""

    catalog: Catalog
    targets: list[Target]
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    last_title: dict[tuple[str, str], str] = field(default_factory=dict)
    count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def mutate(self, target: Target | None = None) -> dict[str, Any]:
        """Apply one change upstream; return its event (not yet published)."""
        with self._lock:
            target = target or self.rng.choice(self.targets)
            self.count += 1
            title = f"{target.kind} change {self.count}"
            self.catalog.update(target.collection, target.record_id, title=title)
            self.last_title[(target.kind, target.record_id)] = title
            if target.kind == "resource":
                shared = len(target.course_ids) > 1
                named = None if shared or self.rng.random() < 0.5 else target.course_ids[0]
                return make_event("resource.updated", target.record_id, named)
            return make_event("courseComponent.updated", target.record_id, target.course_ids[0])

    def lost(self, store: BundleStore) -> list[tuple[str, str]]:
        """Changed records whose last title is missing from a bundle that holds the record."""
        by_id = {(t.kind, t.record_id): t for t in self.targets}
        docs: dict[str, Any] = {}
        missing: list[tuple[str, str]] = []
        for key, title in sorted(self.last_title.items()):
            for course_id in by_id[key].course_ids:
                if course_id not in docs:
                    docs[course_id] = titles_in(store.read_doc(course_id))
                if docs[course_id].get(key) != title:
                    missing.append(key)
                    break
        return missing
