"""The synthetic catalog: deterministic, shaped like OneRoster, holding every planted anomaly."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections import Counter, defaultdict
from typing import Any

import pytest

from core.bundle.model import PATH_SEGMENT
from core.oneroster.models import (
    AssessmentResult,
    ComponentResource,
    Course,
    CourseComponent,
    Resource,
)
from worker.simulator.catalog import (
    COLLECTIONS,
    Catalog,
    CatalogConfig,
    InvalidRecord,
    RecordExists,
    RecordNotFound,
    generate_catalog,
    single_course_config,
)

from .conftest import SMALL

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MODELS: dict[str, Any] = {
    "courses": Course,
    "courseComponents": CourseComponent,
    "componentResources": ComponentResource,
    "resources": Resource,
    "assessmentResults": AssessmentResult,
}
KIND = {
    "Video": "video",
    "Article": "article",
    "Exercise": "exercise",
    "Quiz": "quiz",
    "UnitTest": "unit-test",
}


@pytest.fixture(scope="module")
def default_catalog() -> Catalog:
    return generate_catalog(CatalogConfig())


def _children(catalog: Catalog) -> dict[str | None, list[dict[str, Any]]]:
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for c in catalog.records("courseComponents"):
        children[(c["parent"] or {}).get("sourcedId")].append(c)
    return children


def _links_by_component(catalog: Catalog) -> dict[str, list[dict[str, Any]]]:
    links: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for cr in catalog.records("componentResources"):
        links[cr["courseComponent"]["sourcedId"]].append(cr)
    return links


def test_same_seed_same_records_and_other_seed_differs() -> None:
    first, second = generate_catalog(SMALL), generate_catalog(SMALL)
    for name in COLLECTIONS:
        assert first.records(name) == second.records(name)
    reseeded = generate_catalog(dataclasses.replace(SMALL, seed=7))
    assert reseeded.records("resources") != first.records("resources")


def test_every_record_is_oneroster_shaped(catalog: Catalog) -> None:
    for name in COLLECTIONS:
        records = catalog.records(name)
        assert records, name
        for record in records:
            assert {"sourcedId", "status", "dateLastModified", "metadata"} <= record.keys()
            assert record["status"] in ("active", "tobedeleted")
            assert ISO_MS.match(record["dateLastModified"]), record["dateLastModified"]
            MODELS[name].model_validate(record)  # the client's own models accept it
            for key in ("course", "parent", "courseComponent", "resource", "student"):
                if isinstance(record.get(key), dict):
                    assert {"sourcedId", "href", "type"} <= record[key].keys()
                    assert record[key]["href"].endswith("/" + record[key]["sourcedId"])


def test_courses_carry_slug_subject_and_code(catalog: Catalog) -> None:
    slugs = set()
    for course in catalog.records("courses"):
        model = Course.model_validate(course)
        assert model.slug and model.subject and model.title and model.courseCode
        assert course["subjects"]
        slugs.add(model.slug)
    assert len(slugs) == catalog.count("courses")
    assert {c["metadata"]["subject"] for c in catalog.records("courses")} >= {"math", "science"}


def test_default_shape_stays_within_the_configured_ranges(default_catalog: Catalog) -> None:
    catalog = default_catalog
    children = _children(catalog)
    links = _links_by_component(catalog)
    activities: Counter[str] = Counter()
    shared = set(catalog.facts.shared_resources)
    assert catalog.count("courses") == 20
    for course in catalog.records("courses"):
        tops = children[None]
        tops = [c for c in tops if c["course"]["sourcedId"] == course["sourcedId"]]
        units = [c for c in tops if c["metadata"]["khanComponentType"] == "Unit"]
        challenges = [c for c in tops if c["metadata"]["khanComponentType"] == "CourseChallenge"]
        assert 8 <= len(units) <= 16
        assert len(challenges) == 1
        for unit in units:
            kids = children[unit["sourcedId"]]
            kinds = Counter(k["metadata"]["khanComponentType"] for k in kids)
            assert 1 <= kinds["Lesson"] <= 12
            assert 0 <= kinds["Quiz"] <= 4
            assert kinds["UnitTest"] == 1
            for lesson in kids:
                own = [
                    cr
                    for cr in links[lesson["sourcedId"]]
                    if cr["resource"]["sourcedId"] not in shared
                ]
                if lesson["metadata"]["khanComponentType"] == "Lesson":
                    assert 1 <= len(own) <= 13
                else:
                    assert len(own) == 1
                for cr in own:
                    resource = catalog.get("resources", cr["resource"]["sourcedId"])
                    assert resource is not None
                    activities[(resource["metadata"] or {}).get("khanActivityType", "")] += 1
    plain = activities["Video"] + activities["Exercise"] + activities["Article"]
    assert 0.55 < activities["Video"] / plain < 0.65
    assert 0.25 < activities["Exercise"] / plain < 0.35
    assert 0.07 < activities["Article"] / plain < 0.13


def test_resource_metadata_per_activity(catalog: Catalog) -> None:
    seen = set()
    for resource in catalog.records("resources"):
        meta = resource["metadata"]
        if meta is None or meta.get("khanActivityType") not in KIND | {"CourseChallenge": 1}:
            continue
        activity = meta["khanActivityType"]
        seen.add(activity)
        assert resource["title"] and resource["vendorResourceId"]
        assert isinstance(meta["xp"], int) and meta["url"].startswith("https://")
        if activity == "Video":
            assert meta["type"] == "video" and len(meta["youtubeId"]) == 11
        elif activity == "Article":
            assert meta["type"] == "interactive"
        else:
            assert meta["type"] in ("qti", "interactive")
            assert meta["questionCount"] > 0
    assert seen == {"Video", "Article", "Exercise", "Quiz", "UnitTest", "CourseChallenge"}


def test_course_challenge_hangs_off_a_top_level_component_without_lessons(
    catalog: Catalog,
) -> None:
    children = _children(catalog)
    links = _links_by_component(catalog)
    for course in catalog.records("courses"):
        cid = course["sourcedId"]
        (top,) = [
            c
            for c in children[None]
            if c["course"]["sourcedId"] == cid
            and c["metadata"]["khanComponentType"] == "CourseChallenge"
        ]
        assert children[top["sourcedId"]] == []
        units = [c for c in children[None] if c["course"]["sourcedId"] == cid and c is not top]
        assert top["sortOrder"] > max(u["sortOrder"] for u in units)
        (link,) = links[top["sourcedId"]]
        resource = catalog.get("resources", link["resource"]["sourcedId"])
        assert resource is not None
        assert resource["metadata"]["khanActivityType"] == "CourseChallenge"


def _paths(catalog: Catalog, course_id: str) -> list[str]:
    """Canonical paths (api.md) of the course's active, well-formed lesson resources."""
    course = catalog.get("courses", course_id)
    assert course is not None
    prefix = f"/{course['metadata']['subject']}/{course['metadata']['khanSlug']}"
    comps = {c["sourcedId"]: c for c in catalog.components_of(course_id)}
    paths = []
    for cr in catalog.component_resources_of(course_id):
        lesson = comps[cr["courseComponent"]["sourcedId"]]
        resource = catalog.get("resources", cr["resource"]["sourcedId"])
        if lesson["parent"] is None or resource is None or not resource["metadata"]:
            continue
        unit = comps[lesson["parent"]["sourcedId"]]
        meta = resource["metadata"]
        if meta.get("khanActivityType") not in KIND or "khanSlug" not in meta:
            continue
        segment = PATH_SEGMENT[KIND[meta["khanActivityType"]]]
        paths.append(
            f"{prefix}/{unit['metadata']['khanSlug']}/{lesson['metadata'].get('khanSlug')}"
            f"/{segment}/{meta['khanSlug']}"
        )
    return paths


def test_quizzes_and_unit_tests_sit_in_their_own_assessment_lessons(catalog: Catalog) -> None:
    course_id = "course-001"
    paths = _paths(catalog, course_id)
    assert len(paths) == len(set(paths))  # canonical paths are unique within a course
    quiz_paths = [p for p in paths if "/quiz/" in p]
    test_paths = [p for p in paths if "/test/" in p]
    units = [
        c for c in catalog.components_of(course_id) if c["metadata"]["khanComponentType"] == "Unit"
    ]
    assert len(test_paths) == len(units)
    assert all(re.search(r"/quiz-\d+/quiz/", p) for p in quiz_paths)
    assert all("/unit-test/test/" in p for p in test_paths)


def test_quizzes_follow_the_lessons_they_cover(catalog: Catalog) -> None:
    children = _children(catalog)
    for unit in catalog.components_of("course-001"):
        if unit["parent"] is not None or unit["metadata"]["khanComponentType"] != "Unit":
            continue
        kids = sorted(children[unit["sourcedId"]], key=lambda c: c["sortOrder"])
        kinds = [k["metadata"]["khanComponentType"] for k in kids]
        assert kinds[0] == "Lesson" and kinds[-1] == "UnitTest"
        assert [k["sortOrder"] for k in kids] == list(range(1, len(kids) + 1))


def test_shared_resources_are_linked_into_two_courses(catalog: Catalog) -> None:
    assert len(catalog.facts.shared_resources) == SMALL.shared_resources
    for resource_id, courses in catalog.facts.shared_resources.items():
        assert len(set(courses)) == 2
        for course_id in courses:
            assert resource_id in {r["sourcedId"] for r in catalog.resources_of(course_id)}


def test_shared_slugs_pair_a_video_and_an_exercise_in_one_lesson(catalog: Catalog) -> None:
    assert len(catalog.facts.shared_slugs) == SMALL.shared_slugs
    links = _links_by_component(catalog)
    for fact in catalog.facts.shared_slugs:
        video = catalog.get("resources", fact["videoId"])
        exercise = catalog.get("resources", fact["exerciseId"])
        assert video is not None and exercise is not None
        assert video["metadata"]["khanSlug"] == exercise["metadata"]["khanSlug"] == fact["slug"]
        assert video["metadata"]["khanActivityType"] == "Video"
        assert exercise["metadata"]["khanActivityType"] == "Exercise"
        linked = {cr["resource"]["sourcedId"] for cr in links[fact["lessonId"]]}
        assert {video["sourcedId"], exercise["sourcedId"]} <= linked


def test_missing_metadata_gives_builders_something_to_skip(catalog: Catalog) -> None:
    variants = {m["variant"]: m for m in catalog.facts.missing_metadata}
    assert set(variants) == {"no-slug", "null-metadata", "bad-activity-type", "lesson-no-slug"}
    no_slug = catalog.get("resources", variants["no-slug"]["sourcedId"])
    assert no_slug is not None and "khanSlug" not in no_slug["metadata"]
    null = catalog.get("resources", variants["null-metadata"]["sourcedId"])
    assert null is not None and null["metadata"] is None
    lesson = catalog.get("courseComponents", variants["lesson-no-slug"]["sourcedId"])
    assert lesson is not None and "khanSlug" not in lesson["metadata"]


def test_soft_deleted_records_exist_but_never_in_the_clean_first_course(catalog: Catalog) -> None:
    for name in COLLECTIONS:
        deleted = [r for r in catalog.records(name) if r["status"] == "tobedeleted"]
        assert deleted, name
        assert sorted(r["sourcedId"] for r in deleted) == sorted(catalog.facts.deleted[name])
    clean = catalog.facts.clean_course_id
    assert clean == "course-001"
    for record in [
        catalog.get("courses", clean),
        *catalog.components_of(clean),
        *catalog.component_resources_of(clean),
        *catalog.resources_of(clean),
    ]:
        assert record is not None and record["status"] == "active"
        assert record["metadata"] is not None
    assert not any(clean in courses for courses in catalog.facts.shared_resources.values())
    assert catalog.facts.deleted_course_ids == ["course-005"]


def test_assessment_results_cover_attempts_dates_and_legacy_rows(catalog: Catalog) -> None:
    results = [AssessmentResult.model_validate(r) for r in catalog.records("assessmentResults")]
    assert any(r.attempt is None for r in results)
    assert {r.attempt for r in results} >= {1, 2}
    raw_dates = {len(r["scoreDate"]) for r in catalog.records("assessmentResults")}
    assert 10 in raw_dates and any(n > 10 for n in raw_dates)
    for result in results:
        item = result.assessmentLineItem.sourcedId
        assert item.endswith("_ali")
        resource = catalog.get("resources", item.removesuffix("_ali"))
        assert resource is not None
        assert resource["metadata"]["khanActivityType"] in ("Quiz", "UnitTest", "CourseChallenge")


def test_single_course_config_makes_one_clean_course_of_about_500_resources() -> None:
    catalog = generate_catalog(single_course_config(500))
    assert catalog.count("courses") == 1
    lesson_links = [
        cr
        for cr in catalog.records("componentResources")
        if cr["courseComponent"]["sourcedId"].startswith("lesson-")
    ]
    assert 450 <= len(lesson_links) <= 550
    assert catalog.facts.clean_course_id == "course-001"
    assert all(r["status"] == "active" for n in COLLECTIONS[:4] for r in catalog.records(n))


# --- mutations -------------------------------------------------------------------------------
def _stamp(record: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(record["dateLastModified"].replace("Z", "+00:00"))


def test_update_merges_metadata_and_bumps_date_last_modified(catalog: Catalog) -> None:
    before = catalog.get("resources", "res-000001")
    assert before is not None
    after = catalog.update("resources", "res-000001", title="New", metadata={"xp": 99})
    assert after["title"] == "New"
    assert after["metadata"]["xp"] == 99
    assert after["metadata"]["khanSlug"] == before["metadata"]["khanSlug"]
    assert _stamp(after) > _stamp(before)
    assert ISO_MS.match(after["dateLastModified"])
    assert before["title"] != "New"  # the old snapshot is untouched (records are replaced)
    again = catalog.update("resources", "res-000001", title="Newer")
    assert _stamp(again) > _stamp(after)


def test_timestamps_grow_even_when_the_clock_stands_still(catalog: Catalog) -> None:
    frozen = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)  # earlier than every generated record
    still = Catalog({n: catalog.records(n) for n in COLLECTIONS}, clock=lambda: frozen)
    first = still.update("courses", "course-001", title="a")
    second = still.update("courses", "course-002", title="b")
    newest = max(_stamp(r) for n in COLLECTIONS for r in catalog.records(n))
    assert newest < _stamp(first) < _stamp(second)


def test_soft_delete_keeps_the_record(catalog: Catalog) -> None:
    count = catalog.count("courseComponents")
    deleted = catalog.soft_delete("courseComponents", "unit-001-01")
    assert deleted["status"] == "tobedeleted"
    assert catalog.count("courseComponents") == count
    assert catalog.get("courseComponents", "unit-001-01") == deleted


def test_create_and_upsert(catalog: Catalog) -> None:
    made = catalog.create("courses", {"title": "Fresh", "metadata": {"khanSlug": "fresh"}})
    assert made["sourcedId"].startswith("course-new-")
    assert made["status"] == "active"
    with pytest.raises(RecordExists):
        catalog.create("courses", {"sourcedId": made["sourcedId"]})
    link, created = catalog.upsert(
        "componentResources",
        "cr-x",
        {"courseComponent": {"sourcedId": "lesson-001-01-01"}, "resource": {"sourcedId": "r"}},
    )
    assert created
    assert link["courseComponent"]["href"].endswith("/courses/components/lesson-001-01-01")
    assert link["courseComponent"]["type"] == "courseComponent"
    with pytest.raises(InvalidRecord):
        catalog.upsert("courses", "course-001", {"sourcedId": "course-002"})
    with pytest.raises(RecordNotFound):
        catalog.soft_delete("courses", "nope")
    with pytest.raises(RecordNotFound):
        catalog.update("courses", "nope", title="x")


def test_lookups(catalog: Catalog) -> None:
    course = catalog.get("courses", "course-001")
    assert course is not None
    assert catalog.course_by_slug(course["metadata"]["khanSlug"]) == course
    assert catalog.course_by_slug("no-such-slug") is None
    assert all(
        c["course"]["sourcedId"] == "course-001" for c in catalog.components_of("course-001")
    )
    summary = catalog.summary()
    assert summary["courses"][0]["sourcedId"] == "course-001"
    assert summary["counts"]["courses"] == {"total": 5, "active": 4}
    assert summary["facts"]["cleanCourseId"] == "course-001"


def test_legacy_dialect_names_the_parent_course_component() -> None:
    catalog = generate_catalog(dataclasses.replace(SMALL, dialect="legacy"))
    official = generate_catalog(SMALL)
    lesson = catalog.get("courseComponents", "lesson-001-01-01")
    assert lesson is not None
    assert "parent" not in lesson
    assert lesson["courseComponent"] == {"sourcedId": "unit-001-01"}
    assert CourseComponent.model_validate(lesson).parent is not None
    unit = catalog.get("courseComponents", "unit-001-01")
    assert unit is not None and unit["courseComponent"] is None
    assert catalog.summary()["courses"] == official.summary()["courses"]
