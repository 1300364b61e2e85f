"""The message guard: a protocol-2 JSON call of a registered task passes; anything else is named."""

from __future__ import annotations

import inspect
import pickle
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from kombu.serialization import dumps

from core.events.message_guard import (
    MAX_DEPTH,
    Rejection,
    TaskMessage,
    check_message,
)
from tests.core.events.support import envelope
from worker.celery_app import TASK_REBUILD, app

HANDLE = "course_bundles.handle_event"
MAX_BYTES = 64 * 1024


def our_tasks() -> dict[str, inspect.Signature]:
    import tasks.events
    import tasks.rebuild  # noqa: F401

    return {name: inspect.signature(app.tasks[name].run) for name in (HANDLE, TASK_REBUILD)}


def celery_message(
    name: str = HANDLE, args: Any = None, kwargs: Any = None, **options: Any
) -> TaskMessage:
    """A message exactly as Celery's own producer (send_task, apply_async) writes it."""
    args = [envelope()] if args is None else args
    made = app.amqp.create_task_message("id-1", name, args, kwargs or {}, **options)
    content_type, encoding, body = dumps(made.body, serializer="json")
    return TaskMessage(made.headers, content_type, encoding, body)


def headers(**changes: Any) -> dict[str, Any]:
    return {**celery_message().headers, **changes}  # type: ignore[dict-item]


def raw(body: bytes | str | None, **changes: Any) -> TaskMessage:
    fields: dict[str, Any] = {
        "headers": headers(),
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "body": body,
    }
    fields.update(changes)
    return TaskMessage(**fields)


def call(args: Any, kwargs: Any = None, embed: Any = None) -> bytes:
    return orjson.dumps([args, {} if kwargs is None else kwargs, {} if embed is None else embed])


def rejected(message: TaskMessage) -> Rejection:
    verdict = check_message(message, our_tasks(), max_bytes=MAX_BYTES)
    assert verdict is not None, "the message should have been refused"
    assert verdict.detail
    return verdict


# --- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(celery_message(), id="handle_event(envelope)"),
        pytest.param(celery_message(args=[], kwargs={"envelope": envelope()}), id="by keyword"),
        pytest.param(celery_message(TASK_REBUILD, args=["course-1"]), id="rebuild(course_id)"),
        pytest.param(
            celery_message(
                TASK_REBUILD, args=["c"], kwargs={"failures": 2, "trailing": True}, countdown=3
            ),
            id="rebuild with kwargs and an eta",
        ),
        pytest.param(
            celery_message(expires=datetime(2030, 1, 1, tzinfo=UTC), retries=2),
            id="expires and retries",
        ),
    ],
)
def test_a_call_as_celery_sends_it_passes(message: TaskMessage) -> None:
    assert check_message(message, our_tasks(), max_bytes=MAX_BYTES) is None


def test_the_envelope_itself_is_not_judged_here() -> None:
    # handle_event validates events and dead-letters bad ones with the event's own reasons.
    assert check_message(raw(call([{"weird": "shape"}])), our_tasks(), max_bytes=MAX_BYTES) is None


# --- refused ----------------------------------------------------------------------------------


def test_the_reported_finding_a_dict_body_is_refused_as_a_shape_problem() -> None:
    verdict = rejected(raw(b'{"weird": "shape"}'))
    assert verdict.code == "shape"
    assert "[args, kwargs, embed]" in verdict.detail


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[]", "array of 0"),
        (b"[[], {}]", "array of 2"),
        (b"[[], {}, {}, {}]", "array of 4"),
        (b'"text"', "got string"),
        (b"42", "got number"),
        (b"null", "got null"),
        (b'[{"a": 1}, {}, {}]', "args (body[0]) must be an array, got object"),
        (b'["x", {}, {}]', "args (body[0]) must be an array, got string"),
        (b"[[], [], {}]", "kwargs (body[1]) must be an object, got array"),
        (b"[[], null, {}]", "kwargs (body[1]) must be an object, got null"),
        (b"[[], {}, []]", "embed (body[2]) must be an object, got array"),
        (b"[[], {}, null]", "embed (body[2]) must be an object, got null"),
        (b'[[], {}, {"callbacks": "x"}]', "embed 'callbacks'"),
        (b'[[], {}, {"errbacks": {}}]', "embed 'errbacks'"),
        (b'[[], {}, {"chain": 1}]', "embed 'chain'"),
        (b'[[], {}, {"chord": []}]', "embed 'chord'"),
    ],
)
def test_a_body_that_is_not_args_kwargs_embed_is_refused(body: bytes, words: str) -> None:
    verdict = rejected(raw(body))
    assert verdict.code == "shape"
    assert words in verdict.detail


def test_an_event_nested_deeper_than_events_md_allows_is_left_to_handle_event() -> None:
    deep: Any = "leaf"
    for _ in range(200):
        deep = {"d": deep}
    assert check_message(raw(call([deep])), our_tasks(), max_bytes=MAX_BYTES) is None


def test_a_body_nested_too_deep_for_the_pool_decoder_is_refused() -> None:
    levels = MAX_DEPTH + 5  # orjson cannot encode this deep, so the body is written by hand
    body = b"[[" + b"[" * levels + b'"leaf"' + b"]" * levels + b"], {}, {}]"
    verdict = rejected(raw(body))
    assert verdict.code == "shape"
    assert "deeper" in verdict.detail


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"\xff\xfe\x00garbage", "not valid UTF-8"),
        (b"[[], {}, {}", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[[NaN], {}, {}]", "not valid JSON"),
        (None, "no body"),
    ],
)
def test_a_body_that_is_not_utf8_json_is_refused(body: bytes | None, words: str) -> None:
    verdict = rejected(raw(body))
    assert verdict.code == "undecodable"
    assert words in verdict.detail


@pytest.mark.parametrize(
    ("content_type", "content_encoding"),
    [
        ("application/x-python-serialize", "binary"),
        ("application/yaml", "utf-8"),
        ("application/x-yaml", "utf-8"),
        ("application/x-msgpack", "binary"),
        ("application/data", "binary"),  # Celery passes this through undecoded
        ("text/plain", "utf-8"),
        ("application/json; charset=utf-8", "utf-8"),
        (None, None),
        ("application/json", "latin-1"),
        ("application/json", "binary"),
    ],
)
def test_anything_but_utf8_json_is_refused_without_being_decoded(
    content_type: str | None, content_encoding: str | None
) -> None:
    body = pickle.dumps([[], {}, {}]) if content_encoding == "binary" else call([envelope()])
    verdict = rejected(raw(body, content_type=content_type, content_encoding=content_encoding))
    assert verdict.code == "content_type"
    assert "application/json" in verdict.detail or "utf-8" in verdict.detail


def test_content_encoding_may_be_absent_or_spelled_in_capitals() -> None:
    for encoding in (None, "UTF-8", "utf8"):
        message = raw(call([envelope()]), content_encoding=encoding)
        assert check_message(message, our_tasks(), max_bytes=MAX_BYTES) is None


def test_a_body_over_the_limit_is_refused_before_it_is_parsed() -> None:
    body = call([{"pad": "x" * MAX_BYTES}])
    verdict = rejected(raw(body))
    assert verdict.code == "too_large"
    assert str(len(body)) in verdict.detail


@pytest.mark.parametrize(
    ("message_headers", "code"),
    [
        (None, "not_a_task"),
        ({}, "not_a_task"),
        (["task", HANDLE], "not_a_task"),
        ("task", "not_a_task"),
        # protocol 1 (the task named in the body) is never sent by our producers or beat
        ({"id": "x"}, "not_a_task"),
    ],
)
def test_a_message_without_protocol_2_headers_is_refused(message_headers: Any, code: str) -> None:
    assert rejected(raw(call([envelope()]), headers=message_headers)).code == code


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"task": ""}, "'task' header"),
        ({"task": ["course_bundles.handle_event"]}, "'task' header"),
        ({"task": 7}, "'task' header"),
        ({"id": None}, "'id' header"),
        ({"id": ""}, "'id' header"),
        ({"id": 12}, "'id' header"),
        ({"shadow": 1}, "'shadow' header"),
        ({"root_id": ["a"]}, "'root_id' header"),
        ({"parent_id": {}}, "'parent_id' header"),
        ({"group": 3}, "'group' header"),
        ({"argsrepr": []}, "'argsrepr' header"),
        ({"lang": 1}, "'lang' header"),
        ({"eta": "tomorrow"}, "'eta' header"),
        ({"eta": 1700000000}, "'eta' header"),
        ({"expires": "soon"}, "'expires' header"),
        ({"retries": "3"}, "'retries' header"),
        ({"retries": -1}, "'retries' header"),
        ({"retries": True}, "'retries' header"),
        ({"retries": 1.5}, "'retries' header"),
        ({"timelimit": "soon"}, "'timelimit' header"),
        ({"timelimit": [1]}, "'timelimit' header"),
        ({"timelimit": [1, 2, 3]}, "'timelimit' header"),
        ({"timelimit": ["1", None]}, "'timelimit' header"),
        ({"ignore_result": "no"}, "'ignore_result' header"),
    ],
)
def test_a_protocol_header_of_the_wrong_type_is_refused(
    changes: dict[str, Any], words: str
) -> None:
    verdict = rejected(raw(call([envelope()]), headers=headers(**changes)))
    assert verdict.code == "headers"
    assert words in verdict.detail


def test_a_message_missing_its_id_header_is_refused() -> None:
    message_headers = headers()
    del message_headers["id"]
    verdict = rejected(raw(call([envelope()]), headers=message_headers))
    assert (verdict.code, "'id' header" in verdict.detail) == ("headers", True)


def test_an_unknown_task_name_is_refused() -> None:
    verdict = rejected(raw(call([envelope()]), headers=headers(task="course_bundles.nope")))
    assert verdict.code == "unknown_task"
    assert "course_bundles.nope" in verdict.detail


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "words"),
    [
        (HANDLE, [], {}, "missing a required argument: 'envelope'"),
        (HANDLE, [envelope(), envelope()], {}, "too many positional arguments"),
        (HANDLE, [envelope()], {"bogus": 1}, "unexpected keyword argument 'bogus'"),
        (HANDLE, [envelope()], {"envelope": envelope()}, "multiple values for argument"),
        (TASK_REBUILD, [], {"failures": 1}, "missing a required argument: 'course_id'"),
        (TASK_REBUILD, ["c", 1, False, "x"], {}, "too many positional arguments"),
        (TASK_REBUILD, ["c"], {"retries": 1}, "unexpected keyword argument 'retries'"),
    ],
)
def test_arguments_that_do_not_fit_the_task_signature_are_refused(
    name: str, args: list[Any], kwargs: dict[str, Any], words: str
) -> None:
    verdict = rejected(raw(call(args, kwargs), headers=headers(task=name)))
    assert verdict.code == "arguments"
    assert words in verdict.detail
    assert name in verdict.detail
