"""Backpressure on the real brokers with no worker running: trimmed messages, the backlog limit.

Redis broker: DB 10 of the test Redis server; RabbitMQ: the test vhost (``CB_TEST_AMQP_URL``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kombu
import orjson
import pytest
import redis
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import core.events.publisher
from core.errors import BacklogFull
from core.events.broker import EVENTS_QUEUE, CelerySender, build_publisher_app
from core.events.publisher import Publisher, publish_events
from core.events.validate import validate_envelope, validate_event
from core.keys import Keys
from core.settings import Settings
from tests.conftest import TEST_BROKER_AMQP_URL, TEST_REDIS_PORT, TEST_REDIS_URL
from tests.core.events.support import envelope
from tests.integration.pipeline_harness import drain
from worker import cli
from worker.api.app import create_app
from worker.api.services import ApiServices

pytestmark = pytest.mark.integration

BROKERS = {
    "redis": f"redis://127.0.0.1:{TEST_REDIS_PORT}/10",
    "amqp": TEST_BROKER_AMQP_URL,
}
EVENTS_TOKEN = "events-token"


@pytest.fixture(params=sorted(BROKERS))
def broker_url(request: pytest.FixtureRequest) -> str:
    url = BROKERS[request.param]
    try:
        with kombu.Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        pytest.fail(f"{request.param} broker at {url} is not reachable: {exc!r}")
    return url


def delete_queue(broker_url: str, name: str) -> None:
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
    name = f"cbtest-events-{uuid.uuid4().hex[:10]}"
    yield name
    delete_queue(broker_url, name)


def empty_events_queue(broker_url: str) -> None:
    """Declare the ``events`` queue as Celery does and purge it (deleting it would also drop its
    binding under a process-wide sender that already declared it, and its messages would be lost).
    """
    queue = kombu.Queue(EVENTS_QUEUE, kombu.Exchange(EVENTS_QUEUE), routing_key=EVENTS_QUEUE)
    with kombu.Connection(broker_url) as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        bound.purge()


@pytest.fixture
def events_queue(broker_url: str) -> Iterator[str]:
    """The real ``events`` queue (what ``publish_events`` and the CLI send to), emptied around."""
    empty_events_queue(broker_url)
    yield EVENTS_QUEUE
    empty_events_queue(broker_url)


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def settings_for(key_prefix: str, broker_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": TEST_REDIS_URL,
        "broker_url": broker_url,
        "key_prefix": key_prefix,
        "api_tokens": {EVENTS_TOKEN: ["events"]},
        "log_format": "json",
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# --- what is queued ----------------------------------------------------------------------------
def test_the_broker_carries_the_trimmed_envelope_not_the_extra_data(
    broker_url: str, queue: str, real_redis: redis.Redis, keys: Keys
) -> None:
    sender = CelerySender(build_publisher_app(broker_url, visibility_timeout_s=300), queue=queue)
    raw = envelope(
        id="big-1",
        data={"courseId": "course-42", "previousCourseId": "course-41", "html": "x" * 60_000},
        extension="producer-specific",
    )
    Publisher(real_redis, keys, sender).publish([validate_event(raw)])

    [message] = drain(broker_url, queue, 1)
    queued = message.payload[0][0]
    assert queued == {
        "specversion": "1.0",
        "id": "big-1",
        "source": raw["source"],
        "type": raw["type"],
        "time": raw["time"],
        "subject": raw["subject"],
        "data": {"courseId": "course-42", "previousCourseId": "course-41"},
    }
    assert len(message.body) < 1024  # the raw message body, not 60 KB of producer data
    assert validate_envelope(queued).course_id == "course-42"  # what the worker checks


# --- the backlog limit, with no worker consuming ---------------------------------------------
def post(client: TestClient, body: Any) -> Any:
    return client.post(
        "/v1/events",
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {EVENTS_TOKEN}", "Content-Type": "application/json"},
    )


def test_the_api_answers_503_past_the_backlog_and_202_once_it_drains(
    broker_url: str, queue: str, real_redis: redis.Redis, keys: Keys, key_prefix: str
) -> None:
    settings = settings_for(key_prefix, broker_url, event_backlog_max=5)
    sender = CelerySender(build_publisher_app(broker_url, visibility_timeout_s=300), queue=queue)
    services = ApiServices(
        settings=settings,
        redis=real_redis,
        connect=lambda: redis.Redis.from_url(TEST_REDIS_URL),
        sender=sender,
        listen=False,
    )
    with TestClient(create_app(services=services)) as client:
        assert post(client, [envelope(id=f"fill-{i}") for i in range(5)]).status_code == 202

        refused = post(client, envelope(id="over"))
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["type"] == "urn:course-bundles:problem:backlog-full"
        assert post(client, [envelope(id="more-1"), envelope(id="more-2")]).status_code == 503
        assert sender.depth() == 5  # nothing of the refused requests was queued
        assert real_redis.exists(keys.event_seen("over")) == 0  # its retry will not be a duplicate

        drain(broker_url, queue, 5)
        assert eventually(lambda: post(client, envelope(id="over")).status_code == 202)
        assert sender.depth() == 1


def test_the_python_publisher_and_the_cli_refuse_past_the_backlog(
    broker_url: str,
    events_queue: str,
    real_redis: redis.Redis,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    settings = settings_for(key_prefix, broker_url, event_backlog_max=3)
    depth = CelerySender(
        build_publisher_app(broker_url, visibility_timeout_s=300), queue=events_queue
    ).depth
    assert (
        publish_events([envelope(id=f"p-{i}") for i in range(3)], settings=settings).accepted == 3
    )

    with pytest.raises(BacklogFull) as info:
        publish_events(envelope(id="p-over"), settings=settings)
    assert info.value.retryable and info.value.retry_after_s >= 1

    monkeypatch.setattr(core.events.publisher, "get_settings", lambda: settings)
    event_file = tmp_path / "event.json"
    event_file.write_bytes(orjson.dumps(envelope(id="cli-over")))

    def cli_publish() -> Any:
        return CliRunner().invoke(cli.app, ["events", "publish", str(event_file), "--json"])

    refused = cli_publish()
    assert refused.exit_code == 4, refused.output
    assert orjson.loads(refused.stdout)["retryAfter"] >= 1
    assert depth() == 3

    drain(broker_url, events_queue, 3)
    assert eventually(lambda: cli_publish().exit_code == 0)
    assert publish_events(envelope(id="p-over"), settings=settings).accepted == 1
    assert depth() == 2
