from __future__ import annotations

import re

from core.keys import Keys


def _slot_tag(key: str) -> str:
    match = re.search(r"\{([^}]+)\}", key)
    assert match, key
    return match.group(1)


def test_every_course_key_shares_one_hash_tag() -> None:
    keys = Keys(prefix="cb:")
    course_keys = [
        keys.bundle("c1"),
        keys.fence("c1"),
        keys.course_indexes("c1"),
        keys.dirty("c1"),
        keys.rebuild_lease("c1"),
        keys.rebuild_window("c1"),
        keys.missing("c1"),
    ]
    assert {_slot_tag(k) for k in course_keys} == {"course:c1"}
    assert len(set(course_keys)) == len(course_keys)


def test_every_key_starts_with_the_prefix() -> None:
    keys = Keys(prefix="tenant-a:")
    produced = [
        keys.bundle("c"),
        keys.slug_index(),
        keys.subject_index("math"),
        keys.resource_index("r"),
        keys.flight("x"),
        keys.event_seen("e"),
        keys.event_done("e"),
        keys.dlq(),
        keys.swaps_channel(),
        keys.dirty_set(),
    ]
    assert all(k.startswith("tenant-a:") for k in produced)


def test_two_courses_do_not_share_a_tag() -> None:
    keys = Keys()
    assert _slot_tag(keys.bundle("a")) != _slot_tag(keys.bundle("b"))
