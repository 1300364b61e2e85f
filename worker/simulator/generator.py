"""Generates the synthetic catalog (layout and anomalies: see worker.simulator.catalog)."""

from __future__ import annotations

import datetime as dt
import random
import re
from typing import Any

from worker.simulator.catalog import (
    BASE_TIME,
    REF_FIELDS,
    Catalog,
    CatalogConfig,
    CatalogFacts,
    Rec,
    iso_ms,
    ref,
)

SUBJECT_TITLES: dict[str, str] = {
    "math": "Math",
    "science": "Science",
    "computing": "Computing",
    "economics": "Economics",
    "humanities": "Humanities",
    "ela": "Reading & language arts",
}
_COURSE_NAMES: dict[str, tuple[str, ...]] = {
    "math": ("cc-sixth-grade-math", "algebra-1", "geometry", "precalculus", "statistics"),
    "science": ("biology", "chemistry", "physics", "earth-science", "cosmology"),
    "computing": ("computer-programming", "computer-science", "ap-csp", "hour-of-code"),
    "economics": ("microeconomics", "macroeconomics", "personal-finance", "entrepreneurship"),
    "humanities": ("world-history", "us-history", "art-history", "grammar"),
    "ela": ("ela-grade-3", "ela-grade-4", "ela-grade-5", "ela-grade-6"),
}
_WORDS: tuple[str, ...] = (
    "ratios",
    "rates",
    "fractions",
    "decimals",
    "equations",
    "inequalities",
    "functions",
    "graphs",
    "vectors",
    "cells",
    "energy",
    "motion",
    "waves",
    "atoms",
    "bonds",
    "genes",
    "loops",
    "arrays",
    "recursion",
    "markets",
    "supply",
    "demand",
    "trade",
    "empires",
    "revolutions",
    "maps",
    "patterns",
    "shapes",
    "angles",
    "area",
    "volume",
    "probability",
    "data",
    "sampling",
    "forces",
    "circuits",
    "orbits",
    "climate",
    "ecosystems",
    "evolution",
)


def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class _Builder:
    """Generates one catalog; all randomness comes from one seeded ``random.Random``."""

    def __init__(self, cfg: CatalogConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.courses: list[Rec] = []
        self.components: list[Rec] = []
        self.links: list[Rec] = []
        self.resources: list[Rec] = []
        self.results: list[Rec] = []
        self.facts = CatalogFacts()
        self.clock = BASE_TIME
        self.used_course_slugs: set[str] = set()
        # Per course: lessons (plain, not assessment) and the links in each lesson.
        self.lessons_of: dict[str, list[Rec]] = {}
        self.links_of: dict[str, list[Rec]] = {}
        self.assessments: list[Rec] = []

    def stamp(self) -> str:
        self.clock += dt.timedelta(
            seconds=self.rng.randint(1, 600), milliseconds=self.rng.randint(0, 999)
        )
        return iso_ms(self.clock)

    def record(self, sourced_id: str, **fields: Any) -> Rec:
        metadata = fields.pop("metadata", {})
        return {
            "sourcedId": sourced_id,
            "status": "active",
            "dateLastModified": self.stamp(),
            "metadata": metadata,
            **fields,
        }

    def title(self, n: int = 2) -> str:
        return " ".join(self.rng.sample(_WORDS, n)).capitalize()

    # --- structure ---
    def build(self) -> Catalog:
        for index in range(self.cfg.courses):
            self.course(index)
        self.plant_anomalies()
        if self.courses and (len(self.courses) >= 3 or not self.planted_anything()):
            self.facts.clean_course_id = self.courses[0]["sourcedId"]
        self.gradebook()
        data = {
            "courses": self.courses,
            "courseComponents": self.components,
            "componentResources": self.links,
            "resources": self.resources,
            "assessmentResults": self.results,
        }
        if self.cfg.dialect == "legacy":
            _to_legacy(data)
        self.facts.deleted = {
            name: [r["sourcedId"] for r in records if r["status"] == "tobedeleted"]
            for name, records in data.items()
        }
        return Catalog(data, config=self.cfg, facts=self.facts)

    def course(self, index: int) -> None:
        cfg = self.cfg
        subject = cfg.subjects[index % len(cfg.subjects)]
        names = _COURSE_NAMES.get(subject, (subject,))
        base = names[(index // len(cfg.subjects)) % len(names)]
        slug, n = base, 2
        while slug in self.used_course_slugs:
            slug, n = f"{base}-{n}", n + 1
        self.used_course_slugs.add(slug)
        cid = f"course-{index + 1:03d}"
        course = self.record(
            cid,
            title=slug.replace("-", " ").capitalize(),
            courseCode=slug.upper().replace("-", "_")[:24],
            subjects=[SUBJECT_TITLES.get(subject, subject.capitalize())],
            grades=[],
            org=ref("org", "org-khan"),
            metadata={"khanSlug": slug, "subject": subject},
        )
        self.courses.append(course)
        self.lessons_of[cid] = []
        self.links_of[cid] = []
        units = self.rng.randint(*cfg.units)
        for u in range(1, units + 1):
            self.unit(course, u)
        self.challenge(course, units + 1)

    def unit(self, course: Rec, u: int) -> None:
        cid = course["sourcedId"]
        title = self.title()
        uid = f"unit-{cid[7:]}-{u:02d}"
        uslug = f"{_slugify(title)}-{u}"
        unit = self.record(
            uid,
            title=f"Unit {u}: {title}",
            course=ref("course", cid),
            parent=None,
            sortOrder=u,
            metadata={"khanSlug": uslug, "khanComponentType": "Unit"},
        )
        self.components.append(unit)
        lessons = self.rng.randint(*self.cfg.lessons)
        quizzes = min(self.rng.randint(*self.cfg.quizzes), lessons)
        # Quiz k follows lesson ceil(k * lessons / quizzes); the unit test comes last.
        quiz_after = {-(-k * lessons // quizzes): k for k in range(1, quizzes + 1)}
        order = 0
        for n in range(1, lessons + 1):
            order += 1
            lesson = self.component(unit, f"lesson-{uid[5:]}-{n:02d}", order, self.title(3))
            self.lessons_of[cid].append(lesson)
            for r in range(1, self.rng.randint(*self.cfg.resources) + 1):
                self.lesson_resource(course, lesson, r)
            if n in quiz_after:
                k = quiz_after[n]
                order += 1
                self.assessment(
                    unit,
                    order,
                    "Quiz",
                    lslug=f"quiz-{k}",
                    title=f"Quiz {k}",
                    slug=f"{uslug}-quiz-{k}",
                )
        order += 1
        self.assessment(
            unit, order, "UnitTest", lslug="unit-test", title="Unit test", slug=f"{uslug}-unit-test"
        )

    def component(self, unit: Rec, sourced_id: str, order: int, title: str, **meta: Any) -> Rec:
        lesson = self.record(
            sourced_id,
            title=title,
            course=unit["course"],
            parent=ref("courseComponent", unit["sourcedId"]),
            sortOrder=order,
            metadata={
                "khanSlug": meta.pop("slug", _slugify(title)),
                "khanComponentType": "Lesson",
                **meta,
            },
        )
        self.components.append(lesson)
        return lesson

    def link(self, component: Rec, resource: Rec, order: int) -> Rec:
        link = self.record(
            f"cr-{len(self.links) + 1:06d}",
            title=resource["title"],
            courseComponent=ref("courseComponent", component["sourcedId"]),
            resource=ref("resource", resource["sourcedId"]),
            sortOrder=order,
            metadata={},
        )
        self.links.append(link)
        return link

    def new_resource(self, activity: str, title: str, slug: str | None = None) -> Rec:
        rid = f"res-{len(self.resources) + 1:06d}"
        slug = slug or f"{_slugify(title)}-{len(self.resources) + 1}"
        meta: Rec = {"khanSlug": slug, "khanActivityType": activity}
        if activity == "Video":
            youtube = "".join(
                self.rng.choices(
                    "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ0123456789_-", k=11
                )
            )
            meta |= {
                "type": "video",
                "xp": self.rng.randint(2, 8),
                "youtubeId": youtube,
                "url": f"https://www.youtube.com/watch?v={youtube}",
            }
        elif activity == "Article":
            meta |= {
                "type": "interactive",
                "xp": self.rng.randint(1, 4),
                "url": f"https://content.example.org/articles/{slug}",
            }
        else:
            low, high, xp = {
                "Exercise": (4, 10, (5, 15)),
                "Quiz": (6, 12, (20, 30)),
                "UnitTest": (15, 30, (50, 80)),
                "CourseChallenge": (25, 40, (100, 150)),
            }[activity]
            older = activity == "Exercise" and self.rng.random() < 0.1
            meta |= {
                "type": "interactive" if older else "qti",
                "xp": self.rng.randint(*xp),
                "questionCount": self.rng.randint(low, high),
                "url": f"https://qti.example.org/assessment-tests/{rid}",
            }
        resource = self.record(
            rid,
            title=title,
            vendorResourceId=f"khan:{activity.lower()}:{slug}",
            vendorId="khan-academy",
            roles=["primary"],
            importance="primary",
            metadata=meta,
        )
        self.resources.append(resource)
        return resource

    def lesson_resource(self, course: Rec, lesson: Rec, order: int) -> None:
        roll = self.rng.random()
        if roll < self.cfg.video_share:
            activity = "Video"
        elif roll < self.cfg.video_share + self.cfg.exercise_share:
            activity = "Exercise"
        else:
            activity = "Article"
        resource = self.new_resource(activity, self.title(3))
        self.links_of[course["sourcedId"]].append(self.link(lesson, resource, order))

    def assessment(
        self, unit: Rec, order: int, activity: str, *, lslug: str, title: str, slug: str
    ) -> None:
        sid = unit["sourcedId"].replace("unit-", "assess-", 1) + f"-{lslug}"
        holder = self.component(unit, sid, order, title, slug=lslug, khanComponentType=activity)
        holder["metadata"]["khanComponentType"] = activity
        resource = self.new_resource(activity, f"{title}: {unit['title']}", slug)
        self.assessments.append(resource)
        self.link(holder, resource, 1)

    def challenge(self, course: Rec, order: int) -> None:
        cid = course["sourcedId"]
        slug = course["metadata"]["khanSlug"]
        top = self.record(
            f"challenge-{cid[7:]}",
            title="Course challenge",
            course=ref("course", cid),
            parent=None,
            sortOrder=order,
            metadata={"khanSlug": "course-challenge", "khanComponentType": "CourseChallenge"},
        )
        self.components.append(top)
        resource = self.new_resource(
            "CourseChallenge", f"Course challenge: {course['title']}", f"{slug}-course-challenge"
        )
        self.assessments.append(resource)
        self.link(top, resource, 1)

    # --- anomalies ---
    def planted_anything(self) -> bool:
        f = self.facts
        deleted = any(
            r["status"] != "active" for r in self.components + self.links + self.resources
        )
        return bool(f.shared_resources or f.shared_slugs or f.missing_metadata or deleted)

    def plant_anomalies(self) -> None:
        cfg = self.cfg
        ids = [c["sourcedId"] for c in self.courses]
        if len(ids) >= 3 and cfg.deleted_courses:
            for course in self.courses[-cfg.deleted_courses :]:
                course["status"] = "tobedeleted"
                self.facts.deleted_course_ids.append(course["sourcedId"])
        # Anomalies go to live courses other than the first (all courses when there are few).
        pool = [i for i in ids[1:] if i not in self.facts.deleted_course_ids]
        if len(ids) < 3 or not pool:
            pool = ids
        by_id = {r["sourcedId"]: r for r in self.resources}
        plain = {lk["resource"]["sourcedId"] for links in self.links_of.values() for lk in links}
        self.plant_shared_resources(pool, by_id)
        self.plant_shared_slugs(pool, by_id)
        self.plant_missing_metadata(pool, by_id)
        self.plant_deletes(pool, plain)

    def plant_shared_resources(self, pool: list[str], by_id: dict[str, Rec]) -> None:
        if len(pool) < 2:
            return
        for _ in range(self.cfg.shared_resources):
            src, dst = self.rng.sample(pool, 2)
            links = [
                lk
                for lk in self.links_of[src]
                if lk["resource"]["sourcedId"] not in self.facts.shared_resources
            ]
            lessons = self.lessons_of[dst]
            if not links or not lessons:
                continue
            resource = by_id[self.rng.choice(links)["resource"]["sourcedId"]]
            lesson = self.rng.choice(lessons)
            order = 1 + sum(
                1
                for lk in self.links_of[dst]
                if lk["courseComponent"]["sourcedId"] == lesson["sourcedId"]
            )
            self.links_of[dst].append(self.link(lesson, resource, order))
            self.facts.shared_resources[resource["sourcedId"]] = [src, dst]

    def plant_shared_slugs(self, pool: list[str], by_id: dict[str, Rec]) -> None:
        candidates: list[tuple[str, Rec, Rec]] = []
        for cid in pool:
            per_lesson: dict[str, list[Rec]] = {}
            for link in self.links_of[cid]:
                per_lesson.setdefault(link["courseComponent"]["sourcedId"], []).append(
                    by_id[link["resource"]["sourcedId"]]
                )
            for lesson_id, resources in per_lesson.items():
                kinds = {r["metadata"]["khanActivityType"]: r for r in resources}
                if "Video" in kinds and "Exercise" in kinds:
                    candidates.append((lesson_id, kinds["Video"], kinds["Exercise"]))
        taken: set[str] = set(self.facts.shared_resources)
        self.rng.shuffle(candidates)
        for lesson_id, video, exercise in candidates:
            if len(self.facts.shared_slugs) >= self.cfg.shared_slugs:
                break
            if {video["sourcedId"], exercise["sourcedId"]} & taken:
                continue
            taken |= {video["sourcedId"], exercise["sourcedId"]}
            slug = video["metadata"]["khanSlug"]
            exercise["metadata"]["khanSlug"] = slug
            exercise["vendorResourceId"] = f"khan:exercise:{slug}"
            self.facts.shared_slugs.append(
                {
                    "lessonId": lesson_id,
                    "slug": slug,
                    "videoId": video["sourcedId"],
                    "exerciseId": exercise["sourcedId"],
                }
            )

    def plant_missing_metadata(self, pool: list[str], by_id: dict[str, Rec]) -> None:
        taken = set(self.facts.shared_resources) | {
            s[k] for s in self.facts.shared_slugs for k in ("videoId", "exerciseId")
        }
        links = [
            lk
            for cid in pool
            for lk in self.links_of[cid]
            if lk["resource"]["sourcedId"] not in taken
        ]
        lessons = [lk for cid in pool for lk in self.lessons_of[cid]]
        variants = ("no-slug", "null-metadata", "bad-activity-type", "lesson-no-slug")
        for i in range(self.cfg.missing_metadata):
            variant = variants[i % len(variants)]
            if variant == "lesson-no-slug":
                if not lessons:
                    continue
                lesson = self.rng.choice(lessons)
                lesson["metadata"].pop("khanSlug", None)
                self.facts.missing_metadata.append(
                    {
                        "collection": "courseComponents",
                        "sourcedId": lesson["sourcedId"],
                        "variant": variant,
                    }
                )
                continue
            if not links:
                continue
            link = links.pop(self.rng.randrange(len(links)))
            resource = by_id[link["resource"]["sourcedId"]]
            if variant == "no-slug":
                resource["metadata"].pop("khanSlug", None)
            elif variant == "null-metadata":
                resource["metadata"] = None
            else:
                resource["metadata"]["khanActivityType"] = "Podcast"
            taken.add(resource["sourcedId"])
            self.facts.missing_metadata.append(
                {"collection": "resources", "sourcedId": resource["sourcedId"], "variant": variant}
            )

    def plant_deletes(self, pool: list[str], plain: set[str]) -> None:
        share = self.cfg.deleted_share
        if share <= 0:
            return
        taken = (
            set(self.facts.shared_resources)
            | {s[k] for s in self.facts.shared_slugs for k in ("videoId", "exerciseId")}
            | {m["sourcedId"] for m in self.facts.missing_metadata}
        )
        by_id = {r["sourcedId"]: r for r in self.resources}
        lessons = [
            lk for cid in pool for lk in self.lessons_of[cid] if lk["sourcedId"] not in taken
        ]
        links = [lk for cid in pool for lk in self.links_of[cid]]
        resources = [
            by_id[rid]
            for rid in dict.fromkeys(lk["resource"]["sourcedId"] for lk in links)
            if rid in plain and rid not in taken
        ]
        # Each kind gets its share, and at least one record so every catalog has soft deletes.
        for records in (lessons, links, resources):
            chosen = [r for r in records if self.rng.random() < share]
            if not chosen and records:
                chosen = [self.rng.choice(records)]
            for record in chosen:
                record["status"] = "tobedeleted"

    # --- gradebook ---
    def gradebook(self) -> None:
        if not self.assessments:
            return
        n = 0
        for s in range(1, self.cfg.students + 1):
            student = f"student-{s:03d}"
            picks = self.rng.sample(
                self.assessments, min(len(self.assessments), self.cfg.results_per_student)
            )
            for index, resource in enumerate(picks):
                legacy = index == 0 and s % 3 == 0  # a few results carry no attempt number
                for attempt in range(1, self.rng.randint(1, 3) + 1):
                    n += 1
                    day = self.clock.date() + dt.timedelta(days=n % 30)
                    score_date = (
                        day.isoformat() if n % 2 else f"{day.isoformat()}T10:{n % 60:02d}:00.000Z"
                    )
                    meta: Rec = {} if legacy else {"attempt": attempt}
                    result = self.record(
                        f"ar-{n:06d}",
                        assessmentLineItem=ref(
                            "assessmentLineItem", resource["sourcedId"] + self.cfg.line_item_suffix
                        ),
                        student=ref("user", student),
                        score=float(self.rng.randint(0, 100)),
                        scoreDate=score_date,
                        scoreStatus="fully graded",
                        metadata=meta,
                    )
                    if n % 17 == 0:
                        result["status"] = "tobedeleted"
                    self.results.append(result)


def _to_legacy(data: dict[str, list[Rec]]) -> None:
    for records in data.values():
        for record in records:
            for name in REF_FIELDS:
                if isinstance(record.get(name), dict):
                    record[name] = {"sourcedId": record[name]["sourcedId"]}
    for component in data["courseComponents"]:
        component["courseComponent"] = component.pop("parent")


def build(cfg: CatalogConfig) -> Catalog:
    """The catalog for ``cfg`` (deterministic for a seed)."""
    return _Builder(cfg).build()
