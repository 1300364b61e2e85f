"""refuse(): a refused message is dead-lettered and acknowledged, even when Redis is down."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.message import Message
from structlog.testing import capture_logs

from core.events.dlq import DeadLetters
from core.events.message_guard import Rejection
from core.keys import Keys
from worker import guard
from worker.supervise import free_port

QUEUE = Queue("guard-test", Exchange("guard-test"), routing_key="guard-test")


@pytest.fixture
def received() -> Iterator[Message]:
    """One message taken off an in-memory broker queue, not yet acknowledged."""
    with Connection("memory://") as conn:
        conn.Producer().publish(
            b"\xff\xfenot json",
            exchange=QUEUE.exchange,
            routing_key="guard-test",
            declare=[QUEUE],
            content_type="application/json",
            content_encoding="utf-8",
            headers={"task": "course_bundles.handle_event", "id": "m-1"},
        )
        message = QUEUE(conn.default_channel).get(no_ack=False)
        assert message is not None and not message.acknowledged
        yield message


def use_dlq(monkeypatch: pytest.MonkeyPatch, client: Any, keys: Keys) -> DeadLetters:
    dlq = DeadLetters(client, keys)
    monkeypatch.setattr(guard, "get_runtime", lambda: SimpleNamespace(dlq=dlq))
    return dlq


def test_a_refused_message_is_dead_lettered_with_its_raw_body_and_acknowledged(
    received: Message, monkeypatch: pytest.MonkeyPatch, fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    dlq = use_dlq(monkeypatch, fake_redis, keys)
    guard.refuse(received, Rejection("undecodable", "not UTF-8"), connection_errors=())
    assert received.acknowledged
    [letter] = dlq.list()
    assert letter.source == "broker"
    assert letter.payload_encoding == "base64"
    assert letter.payload_bytes() == b"\xff\xfenot json"
    assert "undecodable" in letter.reason and "not UTF-8" in letter.reason
    assert letter.context["message_id"] == "m-1"
    assert letter.context["routing_key"] == "guard-test"


def test_with_the_store_down_the_message_is_still_acknowledged_and_its_body_logged(
    received: Message, monkeypatch: pytest.MonkeyPatch, keys: Keys
) -> None:
    down = redis.Redis(port=free_port(), socket_connect_timeout=1)
    use_dlq(monkeypatch, down, keys)
    with capture_logs() as logs:
        guard.refuse(received, Rejection("undecodable", "not UTF-8"), connection_errors=())
    assert received.acknowledged
    lost = [e for e in logs if e["event"] == "broker_message_not_dead_lettered"]
    assert lost and "not json" in lost[0]["body"]
    verdict = [e for e in logs if e["event"] == "broker_message_rejected"]
    assert verdict[0]["outcome"] == "dropped" and verdict[0]["reason"] == "undecodable"
