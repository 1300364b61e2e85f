"""Validation before the swap: each rule just below and above its threshold, explained or not."""

from __future__ import annotations

import pytest

from core.bundle.codec import encode_bundle
from core.bundle.validation import (
    BundleShape,
    Removals,
    Rules,
    content_digest,
    place,
    validate,
)
from tests.core.bundle.records import Catalog, build, synthetic

Layout = dict[str, dict[str, list[str]]]  # unit -> lesson -> link ids


def layout(units: int, lessons: int, links: int) -> Layout:
    return {
        f"u{u}": {
            f"u{u}-l{le}": [f"u{u}-l{le}-k{k}" for k in range(links)] for le in range(lessons)
        }
        for u in range(units)
    }


def shape(units: Layout, slug: str = "algebra") -> BundleShape:
    lessons = {lesson: unit for unit, ls in units.items() for lesson in ls}
    links = {
        link: place(lesson, f"res-{link}")
        for ls in units.values()
        for lesson, ks in ls.items()
        for link in ks
    }
    return BundleShape(slug, tuple(units), lessons, links)


def without_lessons(units: Layout, gone: list[str]) -> Layout:
    return {u: {le: ks for le, ks in ls.items() if le not in gone} for u, ls in units.items()}


def without_links(units: Layout, gone: set[str]) -> Layout:
    return {
        u: {le: [k for k in ks if k not in gone] for le, ks in ls.items()}
        for u, ls in units.items()
    }


LESSONS_ONLY = Rules(max_lesson_loss=0.5, max_resource_loss=1.0)


def test_a_first_build_has_nothing_to_compare_with_and_is_published() -> None:
    assert validate(shape({}), None).ok


def test_the_same_course_again_is_published() -> None:
    old = shape(layout(4, 5, 2))
    assert validate(shape(layout(4, 5, 2)), old).ok


@pytest.mark.parametrize(("lost", "held"), [(10, False), (11, True)])
def test_losing_more_than_half_the_lessons_holds(lost: int, held: bool) -> None:
    old_units = layout(4, 5, 1)  # 20 lessons; lessons lost from every unit, never a whole one
    names = [f"u{u}-l{le}" for le in range(5) for u in range(4)]
    new = shape(without_lessons(old_units, names[:lost]))
    verdict = validate(new, shape(old_units), rules=LESSONS_ONLY)
    assert (not verdict.ok) is held
    if held:
        assert verdict.reason == "lessons_lost"
        assert "11 of 20" in verdict.detail


@pytest.mark.parametrize(("lost", "held"), [(10, False), (11, True)])
def test_losing_more_than_half_the_links_holds(lost: int, held: bool) -> None:
    old_units = layout(2, 5, 2)  # 20 links, 2 per lesson
    first_links = [f"u{u}-l{le}-k0" for u in range(2) for le in range(5)]
    gone = set(first_links[:lost]) | ({"u0-l0-k1"} if lost > 10 else set())
    new = shape(without_links(old_units, gone))
    verdict = validate(new, shape(old_units))
    assert (not verdict.ok) is held
    if held:
        assert verdict.reason == "resources_lost"


def test_a_threshold_is_a_setting() -> None:
    old_units = layout(2, 5, 2)
    gone = {f"u{u}-l{le}-k0" for u in range(2) for le in range(5)}  # 10 of 20
    new = shape(without_links(old_units, gone))
    assert validate(new, shape(old_units)).ok
    strict = validate(new, shape(old_units), rules=Rules(max_resource_loss=0.4))
    assert strict.reason == "resources_lost"


def test_losses_explained_by_delete_events_are_published() -> None:
    old_units = layout(4, 5, 2)
    gone_lessons = [f"u{u}-l{le}" for u in range(4) for le in range(4)]  # 16 of 20 lessons
    new = shape(without_lessons(old_units, gone_lessons))
    assert validate(new, shape(old_units)).reason == "lessons_lost"
    explained = Removals(components=frozenset(gone_lessons))
    assert validate(new, shape(old_units), removals=explained).ok


def test_a_deleted_unit_explains_its_lessons_and_links() -> None:
    old_units = layout(4, 5, 2)
    new_units = {u: ls for u, ls in old_units.items() if u in ("u3",)}
    new = shape(new_units)
    assert not validate(new, shape(old_units)).ok
    removals = Removals(components=frozenset({"u0", "u1", "u2"}))
    assert validate(new, shape(old_units), removals=removals).ok


def test_link_and_resource_deletions_explain_lost_links() -> None:
    old_units = layout(2, 5, 2)
    gone = {f"u{u}-l{le}-k{k}" for u in range(2) for le in range(5) for k in range(2)} - {
        "u0-l0-k0",
        "u1-l0-k0",
    }
    new = shape(without_links(old_units, gone))
    assert validate(new, shape(old_units)).reason == "resources_lost"
    by_link = Removals(links=frozenset(gone))
    assert validate(new, shape(old_units), removals=by_link).ok
    by_resource = Removals(resources=frozenset(f"res-{k}" for k in gone))
    assert validate(new, shape(old_units), removals=by_resource).ok


def test_a_course_left_with_no_units_holds_unless_every_unit_was_deleted() -> None:
    old = shape(layout(3, 2, 2))
    verdict = validate(shape({}), old)
    assert verdict.reason == "all_units"
    assert validate(shape({}), old, removals=Removals(components=frozenset({"u0", "u1", "u2"}))).ok
    partly = Removals(components=frozenset({"u0", "u1"}))
    assert validate(shape({}), old, removals=partly).reason == "all_units"


def test_a_unit_that_lost_every_link_holds_though_the_course_lost_little() -> None:
    old_units = layout(4, 2, 2)  # 16 links; u0 loses its 4 (25%)
    gone = {"u0-l0-k0", "u0-l0-k1", "u0-l1-k0", "u0-l1-k1"}
    new = shape(without_links(old_units, gone))
    verdict = validate(new, shape(old_units))
    assert verdict.reason == "unit_links_lost"
    assert "u0" in verdict.detail
    assert validate(new, shape(old_units), removals=Removals(links=frozenset(gone))).ok


def test_a_unit_whose_links_were_replaced_is_not_empty() -> None:
    old_units = layout(4, 2, 1)
    new_units = {**old_units, "u0": {"u0-l0": ["new-link"], "u0-l1": []}}
    assert validate(shape(new_units), shape(old_units)).ok


def test_lessons_that_lost_their_live_unit_hold() -> None:
    old_units = layout(4, 5, 1)
    new = shape(without_lessons(old_units, ["u0-l0"]))
    orphaned = [("courseComponent", "u0-l0", "parent_inactive")]
    assert validate(new, shape(old_units), skipped=orphaned).reason == "orphan_lessons"
    new_orphan = [("courseComponent", "brand-new", "parent_missing")]
    assert validate(new, shape(old_units), skipped=new_orphan).ok
    explained = Removals(components=frozenset({"u0-l0"}))
    assert validate(new, shape(old_units), skipped=orphaned, removals=explained).ok


def test_duplicate_ids_and_a_missing_slug_hold() -> None:
    old = shape(layout(2, 2, 1))
    dup = BundleShape("algebra", ("u0", "u0"), {}, {})
    assert validate(dup, old).reason == "duplicate_ids"
    assert validate(shape(layout(2, 2, 1), slug=""), old).reason == "no_slug"


def test_duplicate_lesson_ids_in_a_document_are_found() -> None:
    cat = Catalog()
    cat.unit("u0")
    cat.lesson("l0", "u0")
    cat.item("l0", "r0")
    doc = cat.build().doc
    doc["units"].append({**doc["units"][0], "sourcedId": "u1"})
    assert BundleShape.of(doc).duplicates
    assert not BundleShape.of(cat.build().doc).duplicates


def test_the_shape_of_a_built_course_round_trips() -> None:
    doc = build(synthetic(units=3, lessons=2, per_lesson=3)).doc
    found = BundleShape.of(doc)
    assert len(found.units) == 3  # the challenge holder has no lessons: not a unit
    assert len(found.links) == 3 * (2 * 3 + 2)
    assert BundleShape.loads(found.dumps()) == found
    with pytest.raises(ValueError):
        BundleShape.loads(b"{}")


def test_the_content_digest_ignores_generation_and_build_time_only() -> None:
    records = synthetic(units=2, lessons=2, per_lesson=2)
    one = encode_bundle(build(records, generation=1).doc).json
    two = encode_bundle(build(records, generation=2).doc).json
    assert one != two and content_digest(one) == content_digest(two)
    changed = build(records, generation=3).doc
    changed["units"][0]["title"] = "renamed"
    assert content_digest(encode_bundle(changed).json) != content_digest(one)


def test_removal_members_are_parsed_by_kind() -> None:
    found = Removals.from_members(["component:u1", "link:k1", "resource:r1", "odd", "x:y"])
    assert found == Removals(frozenset({"u1"}), frozenset({"k1"}), frozenset({"r1"}))
