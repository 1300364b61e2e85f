"""Property: any JSON gets a CourseEvent or InvalidEvent from validation, nothing else."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InvalidEvent
from core.events.model import CourseEvent
from core.events.validate import parse_batch, parse_event_bytes, validate_event
from tests.core.events.support import envelope

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children)
    ),
    max_leaves=20,
)

FIELDS = ["specversion", "id", "source", "type", "time", "subject", "datacontenttype", "data"]
plausible = {
    "specversion": st.sampled_from(["1.0", "0.3", ""]),
    "id": st.from_regex(r"[A-Za-z0-9._:-]{0,130}", fullmatch=True),
    "type": st.sampled_from(
        ["oneroster.course.deleted", "oneroster.resource.updated", "oneroster.x.y", "course"]
    ),
    "time": st.sampled_from(
        ["2026-11-22T10:15:03Z", "2026-11-22T10:15:03", "2026-99-99T00:00:00Z"]
    ),
    "subject": st.from_regex(r"[A-Za-z0-9:._ -]{0,5}", fullmatch=True),
    "data": st.fixed_dictionaries(
        {}, optional={"courseId": json_values | st.just("c1"), "previousCourseId": json_values}
    ),
}
# Envelopes whose fields are each plausible, arbitrary JSON, or absent.
random_envelopes = st.fixed_dictionaries(
    {},
    optional={f: (plausible[f] | json_values) if f in plausible else json_values for f in FIELDS},
)
_DROP = object()


def _mutated(field: str | None, value: object) -> dict[str, Any]:
    env = envelope(type="oneroster.resource.updated", data={})
    if field is not None:
        if value is _DROP:
            env.pop(field, None)
        else:
            env[field] = value
    return env


# The valid contract example with at most one field replaced by anything or dropped.
near_valid = st.builds(
    _mutated,
    st.sampled_from([None, *FIELDS]),
    st.one_of(st.just(_DROP), json_values, *plausible.values()),
)
envelopes = near_valid | random_envelopes


def outcome(call: Any, *args: Any, **kwargs: Any) -> object:
    try:
        return call(*args, **kwargs)
    except InvalidEvent as exc:
        assert exc.reasons and all(isinstance(r, str) and r for r in exc.reasons)
        return exc


@settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(json_values | envelopes)
def test_any_json_value_is_an_event_or_invalid(value: object) -> None:
    result = outcome(validate_event, value)
    assert isinstance(result, CourseEvent | InvalidEvent)
    raw = orjson.dumps(value)
    assert type(outcome(parse_event_bytes, raw)) is type(result)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(json_values | envelopes, max_size=5), st.sampled_from(["a", "b", "c"]))
def test_any_json_batch_is_events_or_invalid(items: list[object], kind: str) -> None:
    content_type = {
        "a": "application/json",
        "b": "application/cloudevents-batch+json",
        "c": "application/cloudevents+json",
    }[kind]
    result = outcome(parse_batch, orjson.dumps(items), content_type=content_type)
    assert isinstance(result, list | InvalidEvent)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=200))
def test_any_bytes_are_an_event_or_invalid(raw: bytes) -> None:
    assert isinstance(outcome(parse_event_bytes, raw), CourseEvent | InvalidEvent)
