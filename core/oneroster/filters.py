"""The one way to build a OneRoster ``filter``: every value is allow-listed before anything is sent.

OneRoster filters have no escape for a quote inside a value, so interpolating a slug is an
injection (``x' OR status='tobedeleted``). Values must match ``^[A-Za-z0-9:._-]{1,200}$``,
field names a strict dotted identifier, and an expression holds at most two predicates.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from core.errors import InvalidFilterValue

OPS = ("=", "!=", ">", ">=", "<", "<=", "~", "@")
JOINS = ("AND", "OR")
MAX_PREDICATES = 2

_VALUE = r"[A-Za-z0-9:._-]{1,200}"
_FIELD = r"[A-Za-z][A-Za-z0-9]{0,63}(?:\.[A-Za-z][A-Za-z0-9]{0,63}){0,3}"
_OP = r"!=|>=|<=|=|>|<|~|@"
_PREDICATE = rf"({_FIELD})({_OP})'({_VALUE}(?:,{_VALUE})*)'"

VALUE_RE = re.compile(rf"^{_VALUE}\Z")
FIELD_RE = re.compile(rf"^{_FIELD}\Z")
_PREDICATE_RE = re.compile(rf"^{_PREDICATE}\Z")
_EXPRESSION_RE = re.compile(rf"^{_PREDICATE}(?: (AND|OR) {_PREDICATE})?\Z")


def check_value(value: object, *, field: str | None = None) -> str:
    """``value`` if allow-listed, else :class:`InvalidFilterValue` (also guards ids in paths)."""
    if not isinstance(value, str) or not VALUE_RE.match(value):
        raise InvalidFilterValue(
            "filter value outside ^[A-Za-z0-9:._-]{1,200}$", field=field, value=_preview(value)
        )
    return value


def predicate(field: str, op: str, value: str | Sequence[str]) -> str:
    """``field op 'value'`` after validating all three; ``@`` takes a sequence (``'a,b,c'``)."""
    if not isinstance(field, str) or not FIELD_RE.match(field):
        raise InvalidFilterValue("filter field name not allowed", field=_preview(field))
    if op not in OPS:
        raise InvalidFilterValue("filter operator not allowed", field=field, op=_preview(op))
    if op == "@":
        values = [value] if isinstance(value, str) else list(value)
        if not values:
            raise InvalidFilterValue("'@' needs at least one value", field=field)
        text = ",".join(check_value(v, field=field) for v in values)
    else:
        if not isinstance(value, str):
            raise InvalidFilterValue("only '@' takes a list of values", field=field, op=op)
        text = check_value(value, field=field)
    return f"{field}{op}'{text}'"


def filter_expr(*predicates: str, join: Literal["AND", "OR"] = "AND") -> str:
    """One or two predicates (from :func:`predicate`) joined by one ``AND``/``OR``."""
    if not 1 <= len(predicates) <= MAX_PREDICATES:
        raise InvalidFilterValue("a filter holds one or two predicates", predicates=len(predicates))
    if join not in JOINS:
        raise InvalidFilterValue("filter join must be AND or OR", join=_preview(join))
    for item in predicates:
        _check_predicate(item)
    return f" {join} ".join(predicates)


def validate_filter(expression: str) -> str:
    """``expression`` when it is exactly what :func:`filter_expr` could build, else an error."""
    match = _EXPRESSION_RE.match(expression) if isinstance(expression, str) else None
    if match is None:
        raise InvalidFilterValue("filter expression not allowed", filter=_preview(expression))
    _check_list_op(match.group(2), match.group(3), expression)
    if match.group(4) is not None:
        _check_list_op(match.group(6), match.group(7), expression)
    return expression


def _check_predicate(item: str) -> None:
    match = _PREDICATE_RE.match(item) if isinstance(item, str) else None
    if match is None:
        raise InvalidFilterValue("filter predicate not allowed", predicate=_preview(item))
    _check_list_op(match.group(2), match.group(3), item)


def _check_list_op(op: str, value: str, text: str) -> None:
    if "," in value and op != "@":
        raise InvalidFilterValue("only '@' takes a list of values", filter=_preview(text))


def _preview(value: object) -> str:
    """A bounded ``repr`` for error context (a refused value may be huge)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
