"""Filter expressions and sorting, as the simulator evaluates them."""

from __future__ import annotations

from typing import Any

import pytest

from worker.simulator.filters import (
    Condition,
    FilterError,
    build_index,
    indexable,
    lookup,
    parse_filter,
    sort_records,
)

RECORDS: list[dict[str, Any]] = [
    {
        "sourcedId": "b",
        "status": "active",
        "sortOrder": 10,
        "dateLastModified": "2025-02-01T00:00:00.000Z",
        "course": {"sourcedId": "c1"},
        "metadata": {"khanSlug": "fractions-intro"},
        "subjects": ["Math", "Science"],
    },
    {
        "sourcedId": "a",
        "status": "tobedeleted",
        "sortOrder": 9,
        "dateLastModified": "2025-01-01T00:00:00.000Z",
        "course": {"sourcedId": "c2"},
        "metadata": {"khanSlug": "decimals"},
        "subjects": ["Math"],
    },
    {
        "sourcedId": "c",
        "status": "active",
        "sortOrder": 2,
        "dateLastModified": "2025-03-01T00:00:00.000Z",
        "course": None,
        "metadata": None,
    },
]


def ids(expression: str) -> list[str]:
    test = parse_filter(expression).predicate()
    return [r["sourcedId"] for r in RECORDS if test(r)]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("status='active'", ["b", "c"]),
        ("status!='active'", ["a"]),
        ("sortOrder>'9'", ["b"]),  # numbers compare as numbers, not as text
        ("sortOrder>='9'", ["b", "a"]),
        ("sortOrder<'9'", ["c"]),
        ("sortOrder<='9'", ["a", "c"]),
        ("dateLastModified>'2025-01-15T00:00:00.000Z'", ["b", "c"]),
        ("dateLastModified<='2025-01-01T00:00:00.000Z'", ["a"]),
        ("metadata.khanSlug~'frac'", ["b"]),
        ("sourcedId@'a,c,zzz'", ["a", "c"]),
        ("sourcedId@'a, c'", ["a", "c"]),
        ("course.sourcedId='c1'", ["b"]),
        ("course.sourcedId!='c1'", ["a", "c"]),  # a missing value is "not equal"
        ("metadata.khanSlug='decimals'", ["a"]),
        ("subjects='Science'", ["b"]),  # list fields match on any element
        ("subjects!='Science'", ["a", "c"]),
        ("status='active' AND course.sourcedId='c1'", ["b"]),
        ("status='tobedeleted' OR sortOrder<'3'", ["a", "c"]),
        ("status = 'active'  and  sortOrder > '5'", ["b"]),
        ("metadata.khanSlug=''", []),
        ("title~'x'", []),
    ],
)
def test_operators_and_joins(expression: str, expected: list[str]) -> None:
    assert ids(expression) == expected


def test_value_may_contain_spaces_and_keywords() -> None:
    parsed = parse_filter("title~'a AND b OR c'")
    assert parsed.conditions == (Condition("title", "~", "a AND b OR c"),)
    assert parsed.join is None


@pytest.mark.parametrize(
    "expression",
    [
        "status='active",  # unbalanced quote
        "status=active",  # unquoted value
        "status",
        "='x'",
        "status=='x'",
        "status^'x'",
        "status='a' AND",
        "status='a' XOR sortOrder='1'",
        "status='a' sortOrder='1'",
        "a='1' AND b='2' AND c='3'",  # more than two predicates
        "a='1' OR b='2' AND c='3'",
        "status='a''",
        "x='it's'",  # no escape for a quote inside a value
        "course..sourcedId='x'",
        "  ",
    ],
)
def test_malformed_filters_are_refused(expression: str) -> None:
    with pytest.raises(FilterError):
        parse_filter(expression)


def test_lookup_walks_dotted_paths() -> None:
    record = {"a": {"b": {"c": 1}}, "n": None}
    assert lookup(record, "a.b.c") == 1
    assert lookup(record, "a.x.c") is None
    assert lookup(record, "n.x") is None


def test_sort_is_stable_numeric_aware_and_puts_missing_last() -> None:
    records = [
        {"id": 1, "k": "b", "n": 10},
        {"id": 2, "k": "a", "n": 9},
        {"id": 3, "k": "b"},
        {"id": 4, "k": "a", "n": 10},
    ]
    assert [r["id"] for r in sort_records(records, "k")] == [2, 4, 1, 3]
    assert [r["id"] for r in sort_records(records, "n")] == [2, 1, 4, 3]
    assert [r["id"] for r in sort_records(records, "k", descending=True)] == [1, 3, 2, 4]
    assert [r["id"] for r in sort_records(records, "missing")] == [1, 2, 3, 4]


def test_indexable_filters_and_the_index_agree_with_a_scan() -> None:
    assert indexable(parse_filter("course.sourcedId='c1'")) == ("course.sourcedId", {"c1"})
    assert indexable(parse_filter("status='active' AND sourcedId@'a,b'")) == (
        "status",
        {"active"},
    )
    assert indexable(parse_filter("sourcedId@'a,b' AND x>'1'")) == ("sourcedId", {"a", "b"})
    assert indexable(parse_filter("a='1' OR b='2'")) is None
    assert indexable(parse_filter("sortOrder='9'")) is None  # numeric: compared as numbers
    index = build_index(RECORDS, "subjects")
    assert index == {"Math": [0, 1], "Science": [0]}
    assert build_index(RECORDS, "course.sourcedId") == {"c1": [0], "c2": [1]}
