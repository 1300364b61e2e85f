"""Events on the real brokers: Celery task messages on Redis (DB 9) and RabbitMQ, and failures."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import kombu
import pytest
import redis

from core.errors import BrokerUnavailable
from core.events.broker import TASK_HANDLE_EVENT, CelerySender, build_publisher_app
from core.events.publisher import Publisher
from core.events.validate import validate_event
from core.keys import Keys
from tests.conftest import TEST_BROKER_AMQP_URL, TEST_REDIS_URL
from tests.core.events.support import envelope
from tests.integration.pipeline_harness import drain

pytestmark = pytest.mark.integration

BROKERS = {"redis": TEST_REDIS_URL, "amqp": TEST_BROKER_AMQP_URL}


@pytest.fixture(params=sorted(BROKERS))
def broker_url(request: pytest.FixtureRequest) -> str:
    url = BROKERS[request.param]
    try:
        with kombu.Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        pytest.fail(f"{request.param} broker at {url} is not reachable: {exc!r}")
    return url


@contextmanager
def unique_queue(broker_url: str) -> Iterator[str]:
    """A queue name unique to the test; the queue (and any Redis bookkeeping) is deleted after."""
    name = f"cbtest-events-{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        with kombu.Connection(broker_url) as conn:
            kombu.Queue(name, channel=conn.default_channel).delete()
        if broker_url.startswith("redis"):
            client = redis.Redis.from_url(broker_url)
            stale = list(client.scan_iter(match=f"*{name}*"))
            if stale:
                client.delete(*stale)
            client.close()


@pytest.fixture
def queue(broker_url: str) -> Iterator[str]:
    with unique_queue(broker_url) as name:
        yield name


def test_each_envelope_becomes_a_celery_json_task_message(broker_url: str, queue: str) -> None:
    app = build_publisher_app(broker_url, visibility_timeout_s=300)
    envs = [envelope(id=f"int-{i}") for i in range(3)]
    CelerySender(app, queue=queue).send(envs)

    messages = drain(broker_url, queue, 3)
    assert [m.headers["task"] for m in messages] == [TASK_HANDLE_EVENT] * 3
    assert {m.content_type for m in messages} == {"application/json"}
    assert [m.payload[0] for m in messages] == [[e] for e in envs]  # args=[envelope]
    assert [m.payload[1] for m in messages] == [{}] * 3
    assert {m.properties.get("delivery_mode") for m in messages} == {2}  # persistent


def test_redis_broker_holds_the_messages_in_the_queue_list() -> None:
    app = build_publisher_app(TEST_REDIS_URL, visibility_timeout_s=300)
    client = redis.Redis.from_url(TEST_REDIS_URL)
    with unique_queue(TEST_REDIS_URL) as queue:
        CelerySender(app, queue=queue).send([envelope(id="l1"), envelope(id="l2")])
        assert client.llen(queue) == 2
    client.close()


def test_amqp_queue_holds_the_confirmed_messages() -> None:
    app = build_publisher_app(TEST_BROKER_AMQP_URL, visibility_timeout_s=300)
    assert app.conf.broker_transport_options == {"confirm_publish": True}
    with unique_queue(TEST_BROKER_AMQP_URL) as queue:
        CelerySender(app, queue=queue).send([envelope(id="q1"), envelope(id="q2")])
        with kombu.Connection(TEST_BROKER_AMQP_URL) as conn:
            declared = conn.default_channel.queue_declare(queue, passive=True)
        assert declared.message_count == 2


def test_publisher_sends_each_id_once_through_the_real_broker(
    broker_url: str, queue: str, real_redis: redis.Redis, keys: Keys
) -> None:
    sender = CelerySender(build_publisher_app(broker_url, visibility_timeout_s=300), queue=queue)
    publisher = Publisher(real_redis, keys, sender, dedupe_ttl_s=60)
    first = publisher.publish([validate_event(envelope(id="once"))])
    again = publisher.publish([validate_event(envelope(id="once"))])
    assert (first.accepted, again.duplicates) == (1, 1)
    assert [m.payload[0][0]["id"] for m in drain(broker_url, queue, 1)] == ["once"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "scheme", ["redis://127.0.0.1:{port}/9", "amqp://guest:guest@127.0.0.1:{port}//"]
)
def test_unreachable_broker_is_broker_unavailable_and_unmarks(
    scheme: str, real_redis: redis.Redis, keys: Keys
) -> None:
    url = scheme.format(port=closed_port())
    sender = CelerySender(build_publisher_app(url, visibility_timeout_s=300), queue="unused")
    publisher = Publisher(real_redis, keys, sender)
    with pytest.raises(BrokerUnavailable) as info:
        publisher.publish([validate_event(envelope(id="lost"))])
    assert info.value.context["sent_before_failure"] == 0
    assert real_redis.exists(keys.event_seen("lost")) == 0  # the producer's retry will be new
