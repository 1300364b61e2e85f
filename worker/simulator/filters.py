"""OneRoster ``filter`` expressions (``field op 'value'``, at most two, AND/OR) and sorting.

Comparison rules: a numeric field against a numeric literal compares as numbers; everything else
(``dateLastModified`` included) compares as strings. ``~`` is a case-sensitive substring test and
``@`` tests membership in a comma list. A list-valued field (``subjects``) matches when any element
does, except ``!=``, which holds when no element equals the value. A missing field never matches,
except ``!=``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import BundlesError

Rec = dict[str, Any]
Predicate = Callable[[Rec], bool]

OPERATORS: tuple[str, ...] = (">=", "<=", "!=", "=", ">", "<", "~", "@")

_PREDICATE = re.compile(
    r"\s*(?P<field>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r"\s*(?P<op>>=|<=|!=|=|>|<|~|@)"
    r"\s*'(?P<value>[^']*)'\s*"
)
_JOIN = re.compile(r"(?P<join>AND|OR)\b", re.IGNORECASE)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


class FilterError(BundlesError, ValueError):
    """A ``filter`` or ``sort`` parameter is malformed."""


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``field op 'value'`` predicate."""

    field: str
    op: str
    value: str


@dataclass(frozen=True, slots=True)
class Filter:
    """One or two conditions; ``join`` is ``AND`` or ``OR`` when there are two."""

    conditions: tuple[Condition, ...]
    join: str | None = None

    def matches(self, record: Rec) -> bool:
        """Whether ``record`` satisfies the expression."""
        return self.predicate()(record)

    def predicate(self) -> Predicate:
        """A compiled predicate (parse once, test many records)."""
        tests = [_compile(c) for c in self.conditions]
        if len(tests) == 1:
            return tests[0]
        first, second = tests
        if self.join == "OR":
            return lambda r: first(r) or second(r)
        return lambda r: first(r) and second(r)


def parse_filter(expression: str) -> Filter:
    """Parse a filter expression; raises :class:`FilterError` with the offending text."""
    conditions: list[Condition] = []
    join: str | None = None
    pos = 0
    while True:
        match = _PREDICATE.match(expression, pos)
        if match is None:
            raise FilterError(
                "malformed filter: expected field op 'value'",
                filter=expression,
                position=pos,
            )
        conditions.append(Condition(match["field"], match["op"], match["value"]))
        pos = match.end()
        if pos == len(expression):
            break
        joined = _JOIN.match(expression, pos)
        if joined is None:
            raise FilterError(
                "malformed filter: expected AND or OR", filter=expression, position=pos
            )
        if join is not None:
            raise FilterError("at most two predicates are allowed", filter=expression)
        join = joined["join"].upper()
        pos = joined.end()
    return Filter(tuple(conditions), join)


def lookup(record: Rec, path: str) -> Any:
    """The value at a dotted path (``course.sourcedId``), or None when any step is missing."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def getter(path: str) -> Callable[[Rec], Any]:
    """A compiled :func:`lookup` for one path (top-level fields skip the walk)."""
    if "." not in path:
        return lambda record: record.get(path)
    return lambda record: lookup(record, path)


def _compile(condition: Condition) -> Predicate:
    op, literal = condition.op, condition.value
    get = getter(condition.field)
    number = _number(literal)

    if op == "@":
        members = frozenset(v.strip() for v in literal.split(","))

        def test_one(value: Any) -> bool:
            return _text(value) in members

    elif op == "~":

        def test_one(value: Any) -> bool:
            return literal in _text(value)

    else:
        compare = _COMPARE[op]

        def test_one(value: Any) -> bool:
            if (
                number is not None
                and isinstance(value, int | float)
                and not isinstance(value, bool)
            ):
                return compare(value, number)
            return compare(_text(value), literal)

    negative = op == "!="

    def test(record: Rec) -> bool:
        value = get(record)
        if value is None:
            return negative
        if isinstance(value, list):
            if negative:
                return all(test_one(v) for v in value)
            return any(test_one(v) for v in value)
        return test_one(value)

    return test


def sort_records(records: Sequence[Rec], field: str, *, descending: bool = False) -> list[Rec]:
    """A stable sort by a dotted field; records missing it go last (first when descending)."""
    get = getter(field)
    values = [get(r) for r in records]
    if all(type(v) is str for v in values):  # the common case (sourcedId): compare directly
        order = sorted(range(len(values)), key=values.__getitem__, reverse=descending)
        return [records[i] for i in order]

    def key(index: int) -> tuple[int, int, float, str]:
        value = values[index]
        if value is None:
            return (1, 0, 0.0, "")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (0, 0, float(value), "")
        return (0, 1, 0.0, _text(value))

    order = sorted(range(len(values)), key=key, reverse=descending)
    return [records[i] for i in order]


def indexable(parsed: Filter) -> tuple[str, frozenset[str]] | None:
    """``(field, values)`` when every match must have ``field`` among ``values``, else None.

    True for an ``=`` or ``@`` condition that stands alone or is joined by AND; the app answers
    such filters from a per-field index instead of a scan.
    """
    if parsed.join == "OR":
        return None
    for condition in parsed.conditions:
        # A numeric literal may equal a number field written differently ("3" vs 3.0): scan.
        if condition.op == "=" and _number(condition.value) is None:
            return condition.field, frozenset({condition.value})
        if condition.op == "@":
            return condition.field, frozenset(v.strip() for v in condition.value.split(","))
    return None


def build_index(records: Sequence[Rec], field: str) -> dict[str, list[int]]:
    """Positions of records per text value of ``field`` (each element for list values)."""
    get = getter(field)
    index: dict[str, list[int]] = {}
    for position, record in enumerate(records):
        value = get(record)
        if value is None:
            continue
        for item in value if isinstance(value, list) else (value,):
            index.setdefault(_text(item), []).append(position)
    return index
