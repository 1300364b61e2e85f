from __future__ import annotations

import pytest

from core.errors import InvalidFilterValue
from core.oneroster.filters import filter_expr, predicate, validate_filter


def test_predicate_quotes_a_valid_value() -> None:
    assert predicate("course.sourcedId", "=", "course-1") == "course.sourcedId='course-1'"
    assert predicate("dateLastModified", ">", "2024-05-01T12:00:00.000Z") == (
        "dateLastModified>'2024-05-01T12:00:00.000Z'"
    )


def test_in_list_takes_a_sequence() -> None:
    assert predicate("sourcedId", "@", ["a", "b:c", "d.e_f"]) == "sourcedId@'a,b:c,d.e_f'"


def test_two_predicates_join_with_one_keyword() -> None:
    left, right = predicate("a", "=", "1"), predicate("b.c", "!=", "2")
    assert filter_expr(left, right) == "a='1' AND b.c!='2'"
    assert filter_expr(left, right, join="OR") == "a='1' OR b.c!='2'"
    assert filter_expr(left) == "a='1'"


def test_a_value_of_200_characters_is_allowed() -> None:
    assert predicate("sourcedId", "=", "x" * 200).endswith("'" + "x" * 200 + "'")


@pytest.mark.parametrize(
    "value",
    [
        "x' OR status='tobedeleted",
        "it's",
        "a OR b",
        " OR ",
        "with space",
        "",
        "x" * 201,
        "café",
        "ünïcode",
        "a,b",
        "tab\there",
        "line\n",
        "x'",
        "%27",
    ],
)
def test_unsafe_values_are_refused(value: str) -> None:
    with pytest.raises(InvalidFilterValue):
        predicate("metadata.khanSlug", "=", value)
    with pytest.raises(InvalidFilterValue):
        predicate("sourcedId", "@", ["ok", value])


@pytest.mark.parametrize(
    "field",
    ["", "1abc", "a..b", "course sourcedId", "status'='x", "a.b.c.d.e", "a-b", "x" * 65, ".a"],
)
def test_bad_field_names_are_refused(field: str) -> None:
    with pytest.raises(InvalidFilterValue):
        predicate(field, "=", "v")


@pytest.mark.parametrize("op", ["==", "LIKE", "", "=<", " = ", "in"])
def test_bad_operators_are_refused(op: str) -> None:
    with pytest.raises(InvalidFilterValue):
        predicate("sourcedId", op, "v")


def test_in_list_needs_values_and_only_in_list_takes_them() -> None:
    with pytest.raises(InvalidFilterValue):
        predicate("sourcedId", "@", [])
    with pytest.raises(InvalidFilterValue):
        predicate("sourcedId", "=", ["a", "b"])


def test_at_most_two_predicates_and_a_known_join() -> None:
    p = predicate("a", "=", "1")
    with pytest.raises(InvalidFilterValue):
        filter_expr(p, p, p)
    with pytest.raises(InvalidFilterValue):
        filter_expr()
    with pytest.raises(InvalidFilterValue):
        filter_expr(p, p, join="XOR")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [
        "a='1' AND b='2' AND c='3'",
        "a='x' OR status='tobedeleted",
        "a = '1'",
        "a='1' and b='2'",
        "a='1,2'",
        "a='1'; DROP",
        "",
    ],
)
def test_hand_written_expressions_outside_the_grammar_are_refused(raw: str) -> None:
    with pytest.raises(InvalidFilterValue):
        validate_filter(raw)
    with pytest.raises(InvalidFilterValue):
        filter_expr(raw)


def test_validate_filter_accepts_what_filter_expr_builds() -> None:
    built = filter_expr(predicate("sourcedId", "@", ["a", "b"]), predicate("x.y", ">=", "2"))
    assert validate_filter(built) == built


def test_refusal_names_the_field_without_echoing_unbounded_input() -> None:
    with pytest.raises(InvalidFilterValue) as info:
        predicate("metadata.khanSlug", "=", "x" * 5000)
    assert info.value.context["field"] == "metadata.khanSlug"
    assert len(str(info.value)) < 300
