"""Event validation: every rule of events.md, with a reason a producer can act on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from core.errors import InvalidEvent
from core.events.validate import (
    InvalidBatch,
    UnsupportedContentType,
    parse_batch,
    parse_event_bytes,
    validate_event,
)
from tests.core.events.support import envelope

MISSING = object()


def reasons_for(obj: object) -> list[str]:
    with pytest.raises(InvalidEvent) as info:
        validate_event(obj)
    assert info.value.reasons, "an invalid event must say why"
    return info.value.reasons


def without(field: str) -> dict[str, Any]:
    env = envelope()
    del env[field]
    return env


def test_contract_example_is_valid() -> None:
    event = validate_event(envelope())
    assert event.id == "9b2f6c1e-3f0a-4c55-9a53-0d3c1d2b7e10"
    assert event.source == "course-builder"
    assert (event.entity, event.action) == ("courseComponent", "updated")
    assert event.type == "oneroster.courseComponent.updated"
    assert event.subject == "comp-unit-7"
    assert event.course_id == "course-42"
    assert event.previous_course_id is None
    assert event.time == datetime(2026, 11, 22, 10, 15, 3, 120_000, tzinfo=UTC)
    assert event.raw == envelope()


def test_minimal_resource_event_without_time_or_data_is_valid() -> None:
    env = {
        "specversion": "1.0",
        "id": "e1",
        "source": "s",
        "type": "oneroster.resource.updated",
        "subject": "res-1",
    }
    event = validate_event(env)
    assert event.course_id is None
    assert event.time is None


def test_unknown_fields_and_extra_data_are_ignored_but_forwarded() -> None:
    env = envelope(traceparent="00-abc", data={"courseId": "c1", "title": {"deep": [1, 2]}})
    event = validate_event(env)
    assert event.course_id == "c1"
    assert event.raw["traceparent"] == "00-abc"
    assert event.raw["data"]["title"] == {"deep": [1, 2]}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ([], "must be a JSON object, got array"),
        ([envelope()], "must be a JSON object, got array"),
        (None, "must be a JSON object, got null"),
        ("event", "must be a JSON object, got string"),
        (42, "must be a JSON object, got number"),
        (True, "must be a JSON object, got boolean"),
    ],
)
def test_envelope_must_be_an_object(obj: object, expected: str) -> None:
    assert any(expected in r for r in reasons_for(obj))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (MISSING, "specversion is required"),
        (None, "specversion is required"),
        ("0.3", "specversion must be \"1.0\", got '0.3'"),
        ("1.0 ", 'specversion must be "1.0"'),
        (1.0, 'specversion must be the string "1.0", got number'),
    ],
)
def test_specversion_rule(value: object, expected: str) -> None:
    env = without("specversion") if value is MISSING else envelope(specversion=value)
    assert any(expected in r for r in reasons_for(env))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (MISSING, "id is required"),
        (None, "id is required"),
        ("", "id must not be empty"),
        ("x" * 129, "id must be 1-128 characters"),
        ("has space", "id must be 1-128 characters"),
        ("slash/id", "id must be 1-128 characters"),
        ("caf\u00e9", "id must be 1-128 characters"),
        ("\u0663\u0664", "id must be 1-128 characters"),  # Arabic-Indic digits are not 0-9
        ("evt-1\n", "id must be 1-128 characters"),
        (123, "id must be a string, got number"),
        (["a"], "id must be a string, got array"),
        ({"a": 1}, "id must be a string, got object"),
    ],
)
def test_id_rule(value: object, expected: str) -> None:
    env = without("id") if value is MISSING else envelope(id=value)
    assert any(expected in r for r in reasons_for(env))


@pytest.mark.parametrize("value", ["a", "x" * 128, "A.b_c:d-9", "urn:uuid:1234"])
def test_id_accepts_the_allowed_alphabet(value: str) -> None:
    assert validate_event(envelope(id=value)).id == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (MISSING, "source is required"),
        ("", "source must not be empty"),
        ("   ", "source must not be empty"),
        (7, "source must be a string, got number"),
    ],
)
def test_source_rule(value: object, expected: str) -> None:
    env = without("source") if value is MISSING else envelope(source=value)
    assert any(expected in r for r in reasons_for(env))


def test_source_may_be_any_non_empty_text() -> None:
    assert validate_event(envelope(source="https://builder.example/école")).source


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (MISSING, "type is required"),
        ("", "type must be oneroster.<entity>.<action>"),
        ("course.updated", "type must be oneroster.<entity>.<action>"),
        ("oneroster.course", "type must be oneroster.<entity>.<action>"),
        ("oneroster.course.updated.extra", "type must be oneroster.<entity>.<action>"),
        ("OneRoster.course.updated", "type must be oneroster.<entity>.<action>"),
        ("oneroster.class.updated", "type entity 'class' is not one of"),
        ("oneroster.Course.updated", "type entity 'Course' is not one of"),
        ("oneroster.course.moved", "type action 'moved' is not one of"),
        (["oneroster.course.updated"], "type must be a string"),
    ],
)
def test_type_rule(value: object, expected: str) -> None:
    env = without("type") if value is MISSING else envelope(type=value)
    assert any(expected in r for r in reasons_for(env))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-22T10:15:03Z", datetime(2026, 11, 22, 10, 15, 3, tzinfo=UTC)),
        ("2026-11-22t10:15:03z", datetime(2026, 11, 22, 10, 15, 3, tzinfo=UTC)),
        (
            "2026-11-22T10:15:03.123456789+05:30",
            datetime(2026, 11, 22, 10, 15, 3, 123456, tzinfo=timezone(timedelta(hours=5.5))),
        ),
        (
            "2026-11-22T10:15:03-08:00",
            datetime(2026, 11, 22, 18, 15, 3, tzinfo=UTC),
        ),
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_time_accepts_rfc3339_with_offset(value: str, expected: datetime) -> None:
    when = validate_event(envelope(time=value)).time
    assert when == expected
    assert when is not None and when.tzinfo is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-22T10:15:03", "time must include a UTC offset"),
        ("2026-11-22T10:15:03.120", "time must include a UTC offset"),
        ("2026-11-22", "time must be an RFC 3339 timestamp"),
        ("20261122T101503Z", "time must be an RFC 3339 timestamp"),
        ("yesterday", "time must be an RFC 3339 timestamp"),
        ("2026-13-01T00:00:00Z", "time is not a real date and time"),
        ("2026-02-30T00:00:00Z", "time is not a real date and time"),
        ("2026-11-22T10:15:03+25:00", "time has an impossible UTC offset"),
        ("2026-11-22T10:15:03+0100", "time must be an RFC 3339 timestamp"),
        ("\uff12\uff10\uff12\uff16-11-22T10:15:03Z", "time must be an RFC 3339 timestamp"),
        (1764000000, "time must be an RFC 3339 string, got number"),
        ({"iso": "2026-11-22T10:15:03Z"}, "time must be an RFC 3339 string, got object"),
    ],
)
def test_time_rejects_naive_malformed_and_non_strings(value: object, expected: str) -> None:
    assert any(expected in r for r in reasons_for(envelope(time=value)))


def test_null_time_is_treated_as_absent() -> None:
    assert validate_event(envelope(time=None)).time is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (MISSING, "subject is required"),
        ("", "subject must not be empty"),
        ("comp unit", "subject must be 1-200 characters"),
        ("x" * 201, "subject must be 1-200 characters"),
        ("comp*", "subject must be 1-200 characters"),
        ("ünit", "subject must be 1-200 characters"),
        (12, "subject must be a string, got number"),
    ],
)
def test_subject_rule(value: object, expected: str) -> None:
    env = without("subject") if value is MISSING else envelope(subject=value)
    assert any(expected in r for r in reasons_for(env))


@pytest.mark.parametrize("entity", ["course", "courseComponent", "componentResource"])
@pytest.mark.parametrize("data", [MISSING, None, {}, {"courseId": None}, {"other": "x"}])
def test_course_id_required_for_course_scoped_entities(entity: str, data: object) -> None:
    env = envelope(type=f"oneroster.{entity}.created")
    if data is MISSING:
        del env["data"]
    else:
        env["data"] = data
    assert any(
        f"data.courseId is required for oneroster.{entity}.* events" in r for r in reasons_for(env)
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("course-42", "data must be a JSON object, got string"),
        ([{"courseId": "c"}], "data must be a JSON object, got array"),
        (5, "data must be a JSON object, got number"),
        ({"courseId": ""}, "data.courseId must not be empty"),
        ({"courseId": 42}, "data.courseId must be a string, got number"),
        ({"courseId": ["c"]}, "data.courseId must be a string, got array"),
        ({"courseId": "c 1"}, "data.courseId must be 1-200 characters"),
        ({"courseId": "c" * 201}, "data.courseId must be 1-200 characters"),
        ({"courseId": "c", "previousCourseId": 1}, "data.previousCourseId must be a string"),
        ({"courseId": "c", "previousCourseId": ""}, "data.previousCourseId must not be empty"),
        ({"courseId": "c", "previousCourseId": "a{b}"}, "data.previousCourseId must be 1-200"),
    ],
)
def test_data_rules(data: object, expected: str) -> None:
    assert any(expected in r for r in reasons_for(envelope(data=data)))


def test_resource_course_id_is_optional_but_checked_when_given() -> None:
    base = {"type": "oneroster.resource.deleted", "subject": "res-9"}
    assert validate_event(envelope(**base, data={})).course_id is None
    assert validate_event(envelope(**base, data={"courseId": None})).course_id is None
    assert validate_event(envelope(**base, data={"courseId": "c7"})).course_id == "c7"
    assert any(
        "data.courseId must be a string" in r
        for r in reasons_for(envelope(**base, data={"courseId": 7}))
    )


def test_previous_course_id_is_read() -> None:
    event = validate_event(envelope(data={"courseId": "c2", "previousCourseId": "c1"}))
    assert (event.course_id, event.previous_course_id) == ("c2", "c1")


def test_data_base64_is_refused() -> None:
    env = envelope(type="oneroster.resource.updated", data_base64="eyJ9")
    del env["data"]
    assert any("data_base64 is not supported" in r for r in reasons_for(env))


def test_datacontenttype_must_be_a_string_when_present() -> None:
    assert any(
        "datacontenttype must be a string" in r for r in reasons_for(envelope(datacontenttype=1))
    )


def test_every_broken_rule_is_reported_at_once() -> None:
    env = {"specversion": "2", "id": "", "type": "x", "time": 5, "data": []}
    reasons = reasons_for(env)
    for field in ("specversion", "id", "source", "type", "time", "subject", "data"):
        assert any(r.startswith(field) for r in reasons), (field, reasons)


def test_reasons_quote_long_values_briefly() -> None:
    reasons = reasons_for(envelope(id="bad id " + "x" * 10_000))
    assert all(len(r) < 200 for r in reasons)


def test_invalid_event_context_names_the_event_when_its_id_is_valid() -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_event(envelope(specversion="0.3"))
    assert info.value.context["event_id"] == envelope()["id"]


def test_deep_nesting_is_refused_without_recursion_errors() -> None:
    nested: Any = "leaf"
    for _ in range(10_000):
        nested = {"x": nested}
    reasons = reasons_for(envelope(data={"courseId": "c", "blob": nested}))
    assert any("nests deeper than" in r for r in reasons)


def test_moderate_nesting_in_ignored_data_is_accepted() -> None:
    nested: Any = 1
    for _ in range(20):
        nested = [nested]
    assert validate_event(envelope(data={"courseId": "c", "blob": nested})).course_id == "c"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({1, 2}, "value JSON cannot carry (set)"),
        (b"bytes", "value JSON cannot carry (bytes)"),
        (float("nan"), "NaN or infinity"),
        (float("inf"), "NaN or infinity"),
        (2**70, "out of the 64-bit range"),
    ],
)
def test_python_values_that_are_not_json_are_refused(value: object, expected: str) -> None:
    assert any(expected in r for r in reasons_for(envelope(extension=value)))


def test_non_string_keys_are_refused() -> None:
    assert any("keys must be strings" in r for r in reasons_for({**envelope(), 1: "x"}))


# --- raw bodies -----------------------------------------------------------------------------
def body(**overrides: Any) -> bytes:
    return orjson.dumps(envelope(**overrides))


def raw_reasons(raw: bytes | str, **kwargs: Any) -> list[str]:
    with pytest.raises(InvalidEvent) as info:
        parse_event_bytes(raw, **kwargs)
    return info.value.reasons


def test_parse_event_bytes_accepts_bytes_and_str() -> None:
    assert parse_event_bytes(body()).id == envelope()["id"]
    assert parse_event_bytes(body().decode()).id == envelope()["id"]


def test_event_over_64_kib_is_refused_before_parsing() -> None:
    padded = body(padding="x" * 70_000)
    assert any("at most 65536 bytes" in r for r in raw_reasons(padded))
    # size comes first: even a huge non-JSON body answers "too large", not "bad JSON"
    assert any("at most 65536 bytes" in r for r in raw_reasons(b"{" * 70_000))


def test_event_just_under_the_limit_is_accepted() -> None:
    filler = 65536 - len(body(padding=""))
    raw = body(padding="x" * filler)
    assert len(raw) == 65536
    assert parse_event_bytes(raw).id


def test_size_limit_counts_utf8_bytes_not_characters() -> None:
    raw = body(padding="é" * 33_000).decode()  # 33k characters, 66k bytes
    assert len(raw) < 65536
    assert any("at most 65536 bytes" in r for r in raw_reasons(raw))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"{'id': 1}", "not valid JSON"),
        (b'{"a": NaN}', "not valid JSON"),
        (b'{"id": "a"} trailing', "not valid JSON"),
        (b'{"id": "\xff\xfe"}', "not valid UTF-8"),
        (b"\xc3\x28", "not valid UTF-8"),
        ('{"id": "\ud800"}', "not valid UTF-8"),
    ],
)
def test_bad_json_and_bad_utf8_are_invalid(raw: bytes | str, expected: str) -> None:
    assert any(expected in r for r in raw_reasons(raw))


def test_json_nested_past_the_parser_limit_is_invalid() -> None:
    assert raw_reasons(b"[" * 5000 + b"]" * 5000)


def test_json_array_as_single_event_is_invalid() -> None:
    assert any("got array" in r for r in raw_reasons(orjson.dumps([envelope()])))


# --- batches and content types ----------------------------------------------------------------
def batch(*envs: dict[str, Any]) -> bytes:
    return orjson.dumps(list(envs))


@pytest.mark.parametrize(
    "content_type",
    [
        "application/cloudevents+json",
        "application/json",
        "Application/CloudEvents+JSON; charset=utf-8",
        'application/json;charset="UTF-8"',
    ],
)
def test_single_event_content_types(content_type: str) -> None:
    events = parse_batch(body(), content_type=content_type)
    assert [e.id for e in events] == [envelope()["id"]]


@pytest.mark.parametrize("content_type", ["application/cloudevents-batch+json", "application/json"])
def test_batch_content_types(content_type: str) -> None:
    raw = batch(envelope(id="a"), envelope(id="b"))
    assert [e.id for e in parse_batch(raw, content_type=content_type)] == ["a", "b"]


def test_batch_with_leading_whitespace_is_recognised_as_array() -> None:
    raw = b"\n  " + batch(envelope(id="a"))
    assert [e.id for e in parse_batch(raw, content_type="application/json")] == ["a"]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "", "application/cloudevents", "multipart/form-data"],
)
def test_unsupported_content_types(content_type: str) -> None:
    with pytest.raises(UnsupportedContentType) as info:
        parse_batch(body(), content_type=content_type)
    assert info.value.reasons[0].startswith("unsupported content type")


def test_non_utf8_charset_is_unsupported() -> None:
    with pytest.raises(UnsupportedContentType) as info:
        parse_batch(body(), content_type="application/json; charset=latin-1")
    assert "charset" in info.value.reasons[0]


def test_array_sent_as_single_event_type_is_explained() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_batch(batch(envelope()), content_type="application/cloudevents+json")
    assert "application/cloudevents-batch+json" in info.value.reasons[0]


def test_object_sent_as_batch_type_is_invalid() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_batch(body(), content_type="application/cloudevents-batch+json")
    assert info.value.reasons == ["a batch must be a JSON array, got object"]


def test_empty_batch_is_invalid() -> None:
    for content_type in ("application/cloudevents-batch+json", "application/json"):
        with pytest.raises(InvalidEvent) as info:
            parse_batch(b"[]", content_type=content_type)
        assert "empty batch" in info.value.reasons[0]


def test_batch_of_exactly_max_is_accepted_and_one_more_is_not() -> None:
    envs = [envelope(id=f"e{i}") for i in range(5)]
    assert len(parse_batch(batch(*envs), content_type="application/json", max_batch=5)) == 5
    with pytest.raises(InvalidEvent) as info:
        parse_batch(batch(*envs, envelope(id="e5")), content_type="application/json", max_batch=5)
    assert not isinstance(info.value, InvalidBatch)
    assert "the batch has 6 events; at most 5 are accepted" in info.value.reasons[0]


def test_default_batch_limit_is_1000() -> None:
    envs = [envelope(id=f"e{i}") for i in range(1001)]
    with pytest.raises(InvalidEvent, match="batch too large"):
        parse_batch(batch(*envs), content_type="application/json")


def test_mixed_batch_names_each_bad_index_and_accepts_nothing() -> None:
    raw = batch(
        envelope(id="ok-0"),
        envelope(id="bad id"),
        envelope(id="ok-2"),
        envelope(type="oneroster.course.updated", data={}),
        "not an object",
    )
    with pytest.raises(InvalidBatch) as info:
        parse_batch(raw, content_type="application/cloudevents-batch+json")
    problems = {p.index: p.reasons for p in info.value.problems}
    assert sorted(problems) == [1, 3, 4]
    assert any("id must be" in r for r in problems[1])
    assert any("data.courseId is required" in r for r in problems[3])
    assert any("got string" in r for r in problems[4])
    assert info.value.message == "3 of 5 events are invalid"
    assert any(r.startswith("event 3: data.courseId is required") for r in info.value.reasons)


def test_each_batch_element_is_held_to_the_event_size_limit() -> None:
    raw = batch(envelope(id="small"), envelope(id="big", padding="x" * 2000))
    with pytest.raises(InvalidBatch) as info:
        parse_batch(raw, content_type="application/json", max_event_bytes=1000)
    assert [p.index for p in info.value.problems] == [1]
    assert "at most 1000 bytes" in info.value.problems[0].reasons[0]


def test_deeply_nested_batch_element_is_a_problem_at_its_index() -> None:
    deep = b"[" * 600 + b"]" * 600
    raw = b"[" + body() + b"," + deep + b"]"
    with pytest.raises(InvalidBatch) as info:
        parse_batch(raw, content_type="application/json")
    assert [p.index for p in info.value.problems] == [1]


def test_batch_bad_json_is_invalid() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_batch(b"[{]", content_type="application/cloudevents-batch+json")
    assert "not valid JSON" in info.value.reasons[0]


def test_duplicate_ids_in_a_batch_are_valid() -> None:
    raw = batch(envelope(id="same"), envelope(id="same"))
    assert [e.id for e in parse_batch(raw, content_type="application/json")] == ["same", "same"]
