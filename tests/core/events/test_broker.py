"""CelerySender without a network: kombu's in-memory transport, and failures mapped to 503s."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kombu
import kombu.exceptions
import pytest

from core.errors import BrokerUnavailable
from core.events.broker import (
    EVENTS_QUEUE,
    TASK_HANDLE_EVENT,
    CelerySender,
    broker_transport_options,
    build_publisher_app,
    default_sender,
)
from core.settings import Settings
from tests.core.events.support import envelope


def test_sender_puts_one_task_message_per_envelope_on_the_queue() -> None:
    url = "memory://"
    queue = f"events-{uuid.uuid4().hex[:8]}"
    app = build_publisher_app(url, visibility_timeout_s=300)
    CelerySender(app, queue=queue).send([envelope(id="a"), envelope(id="b")])

    with kombu.Connection(url) as conn:
        simple = conn.SimpleQueue(queue)
        messages = [simple.get(timeout=1) for _ in range(2)]
        for message in messages:
            message.ack()
        simple.close()
    assert [m.headers["task"] for m in messages] == [TASK_HANDLE_EVENT] * 2
    assert [m.content_type for m in messages] == ["application/json"] * 2
    args = [m.payload[0] for m in messages]
    assert args == [[envelope(id="a")], [envelope(id="b")]]


def test_empty_send_touches_nothing() -> None:
    class NoBroker:
        def producer_or_acquire(self) -> Any:
            raise AssertionError("no connection for an empty batch")

    CelerySender(NoBroker()).send([])


class FailingApp:
    """A stand-in Celery app whose broker fails on the second message."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.sent = 0
        self.conf = type("Conf", (), {"broker_url": "amqp://user:s3cret@broker:5672//"})()

    @contextmanager
    def producer_or_acquire(self) -> Iterator[object]:
        yield object()

    def send_task(self, name: str, **options: Any) -> None:
        if self.sent == 1:
            raise self.error
        self.sent += 1


@pytest.mark.parametrize(
    "error",
    [
        kombu.exceptions.OperationalError("connection refused"),
        ConnectionResetError("reset"),
        TimeoutError("timed out"),
    ],
)
def test_broker_errors_become_broker_unavailable_with_context(error: BaseException) -> None:
    with pytest.raises(BrokerUnavailable) as info:
        CelerySender(FailingApp(error)).send([envelope(id="a"), envelope(id="b")])
    context = info.value.context
    assert context["queue"] == EVENTS_QUEUE
    assert context["events"] == 2
    assert context["sent_before_failure"] == 1
    assert "s3cret" not in str(info.value)


def test_programming_errors_are_not_disguised_as_broker_failures() -> None:
    with pytest.raises(TypeError):
        CelerySender(FailingApp(TypeError("bad argument"))).send([envelope(), envelope()])


def test_transport_options_per_broker() -> None:
    assert broker_transport_options("amqp://guest@h//", visibility_timeout_s=300) == {
        "confirm_publish": True
    }
    assert broker_transport_options("pyamqp://h//", visibility_timeout_s=1)["confirm_publish"]
    redis_opts = broker_transport_options("redis://h:6379/0", visibility_timeout_s=123)
    assert redis_opts["visibility_timeout"] == 123
    assert "confirm_publish" not in redis_opts
    assert broker_transport_options("memory://", visibility_timeout_s=1) == {}


def test_publisher_app_speaks_json_only() -> None:
    app = build_publisher_app("redis://127.0.0.1:6379/9", visibility_timeout_s=42)
    assert app.conf.task_serializer == "json"
    assert list(app.conf.accept_content) == ["json"]
    assert app.conf.broker_transport_options["visibility_timeout"] == 42


def test_default_sender_is_shared_per_broker_url() -> None:
    one = default_sender(Settings(broker_url="memory://one"))
    assert default_sender(Settings(broker_url="memory://one")) is one
    assert default_sender(Settings(broker_url="memory://two")) is not one
