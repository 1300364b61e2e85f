"""Raw broker messages that are not a call of our task: dead-lettered, acknowledged, worker alive.

Each message is published with kombu directly (as a buggy or foreign producer would), on both
brokers, to a real worker process; then a valid event must still be applied.
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from kombu import Connection, Exchange, Queue

from core.events.broker import EVENTS_QUEUE, TASK_HANDLE_EVENT
from core.events.dlq import DeadLetter, DeadLetters
from core.events.publisher import publish_events
from tests.conftest import TEST_BROKER_AMQP_URL, TEST_REDIS_URL
from tests.integration.pipeline_harness import (
    REDIS_BROKER_URL,
    Pipeline,
    make_pipeline,
    purge_broker,
)
from worker.simulator.testing import run_simulator_in_thread
from worker.supervise import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def simulator() -> Iterator[Any]:
    with run_simulator_in_thread() as sim:
        yield sim


@pytest.fixture(params=["redis", "amqp"])
def pipeline(
    request: pytest.FixtureRequest, simulator: Any, tmp_path: Path
) -> Iterator[tuple[Pipeline, str]]:
    broker = REDIS_BROKER_URL if request.param == "redis" else TEST_BROKER_AMQP_URL
    prefix = f"cbtest:raw-{uuid.uuid4().hex[:8]}:"
    purge_broker(broker)
    pipe = make_pipeline(
        sim_url=simulator.base_url,
        key_prefix=prefix,
        broker_url=broker,
        redis_url=TEST_REDIS_URL,
        log_path=tmp_path / "worker.log",
        worker_metrics_port=free_port(),
    )
    pipe.start_worker()
    try:
        yield pipe, broker
    finally:
        pipe.stop_workers()
        purge_broker(broker)
        for key in pipe.redis.scan_iter(match=f"{prefix}*", count=1000):
            pipe.redis.delete(key)
        pipe.redis.close()


def envelope(course_id: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{uuid.uuid4().hex}",
        "source": "tests",
        "type": "oneroster.course.updated",
        "subject": course_id,
        "data": {"courseId": course_id},
    }


def task_headers(**changes: Any) -> dict[str, Any]:
    """Protocol-2 headers as Celery's own producer writes them."""
    headers: dict[str, Any] = {
        "lang": "py",
        "task": TASK_HANDLE_EVENT,
        "id": uuid.uuid4().hex,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": None,
        "parent_id": None,
        "argsrepr": "(...)",
        "kwargsrepr": "{}",
        "origin": "tests",
        "ignore_result": False,
    }
    headers.update(changes)
    return headers


@dataclass
class Raw:
    """One raw message; ``marker`` is in its body so its dead letter can be found."""

    name: str
    code: str  # the reason code the guard must give
    body: bytes
    content_type: str | None = "application/json"
    content_encoding: str | None = "utf-8"
    headers: dict[str, Any] | None = field(default_factory=task_headers)
    marker: str = ""


def call_body(marker: str, args: list[Any] | None = None, kwargs: Any = None) -> bytes:
    args = [envelope(marker)] if args is None else args
    return orjson.dumps([args, {} if kwargs is None else kwargs, {}])


def malformed() -> list[Raw]:
    def m(name: str) -> str:
        return f"raw-{name}-{uuid.uuid4().hex[:8]}"

    cases: list[Raw] = []
    marker = m("shape")
    cases.append(
        Raw("wrong shape", "shape", orjson.dumps({"weird": "shape", "m": marker}), marker=marker)
    )
    marker = m("pickle")
    cases.append(
        Raw(
            "pickle content type",
            "content_type",
            pickle.dumps(((marker,), {}, {})),
            content_type="application/x-python-serialize",
            content_encoding="binary",
            marker=marker,
        )
    )
    marker = m("yaml")
    cases.append(
        Raw(
            "yaml content type",
            "content_type",
            f"- [{marker}]\n- {{}}\n- {{}}\n".encode(),
            content_type="application/yaml",
            marker=marker,
        )
    )
    marker = m("raw-data")
    cases.append(
        Raw(
            "application/data (passed through undecoded)",
            "content_type",
            f'[["{marker}"], {{}}, {{}}]'.encode(),
            content_type="application/data",
            content_encoding="binary",
            marker=marker,
        )
    )
    marker = m("bytes")
    cases.append(
        Raw(
            "undecodable bytes",
            "undecodable",
            b"\xff\xfe\x00" + marker.encode() + b"\xc3",
            marker=marker,
        )
    )
    marker = m("no-headers-bytes")
    cases.append(
        Raw(
            "missing headers, undecodable bytes",
            "undecodable",
            b"\xff\xfe\x00" + marker.encode() + b"\xc3",
            headers=None,
            marker=marker,
        )
    )
    marker = m("no-headers-pickle")
    cases.append(
        Raw(
            "missing headers, pickle content type",
            "content_type",
            pickle.dumps({"task": TASK_HANDLE_EVENT, "m": marker}),
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers=None,
            marker=marker,
        )
    )
    marker = m("unknown-task")
    cases.append(
        Raw(
            "unknown task name",
            "unknown_task",
            call_body(marker),
            headers=task_headers(task="course_bundles.no_such_task"),
            marker=marker,
        )
    )
    marker = m("arity")
    cases.append(
        Raw(
            "wrong arity",
            "arguments",
            call_body(marker, args=[envelope(marker), "extra"]),
            marker=marker,
        )
    )
    marker = m("kwargs")
    cases.append(
        Raw(
            "unknown kwargs",
            "arguments",
            call_body(marker, kwargs={"bogus": marker}),
            marker=marker,
        )
    )
    marker = m("no-headers")
    cases.append(
        Raw("missing headers", "not_a_task", call_body(marker), headers=None, marker=marker)
    )
    marker = m("no-id")
    cases.append(
        Raw(
            "no id header",
            "headers",
            call_body(marker),
            headers={"task": TASK_HANDLE_EVENT},
            marker=marker,
        )
    )
    marker = m("timelimit")
    cases.append(
        Raw(
            "timelimit not a pair",
            "headers",
            call_body(marker),
            headers=task_headers(timelimit="soon"),
            marker=marker,
        )
    )
    marker = m("eta")
    cases.append(
        Raw(
            "eta not a date",
            "headers",
            call_body(marker),
            headers=task_headers(eta="tomorrow"),
            marker=marker,
        )
    )
    return cases


def publish_raw(broker_url: str, messages: list[Raw]) -> None:
    queue = Queue(EVENTS_QUEUE, Exchange(EVENTS_QUEUE), routing_key=EVENTS_QUEUE)
    with Connection(broker_url, connect_timeout=5) as conn:
        producer = conn.Producer()
        for raw in messages:
            producer.publish(
                raw.body,
                exchange=queue.exchange,
                routing_key=EVENTS_QUEUE,
                content_type=raw.content_type,
                content_encoding=raw.content_encoding,
                headers=raw.headers,
                declare=[queue],
                delivery_mode=2,
            )


def messages_left(broker_url: str) -> int:
    """Messages still on the events queue, ready or (Redis) held unacknowledged."""
    if broker_url.startswith("redis://"):
        client = redis.Redis.from_url(broker_url)
        try:
            return int(client.llen(EVENTS_QUEUE)) + int(client.hlen("unacked"))
        finally:
            client.close()
    with Connection(broker_url, connect_timeout=5) as conn:
        declared = conn.channel().queue_declare(queue=EVENTS_QUEUE, passive=True)
        return int(declared.message_count)


def scrape(port: str) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return ""


def test_every_malformed_message_is_dead_lettered_and_acked_and_the_worker_lives(
    pipeline: tuple[Pipeline, str], simulator: Any
) -> None:
    pipe, broker = pipeline
    worker = pipe.procs[0]
    dlq = DeadLetters(pipe.redis, pipe.keys)
    cases = malformed()

    def alive() -> None:
        assert worker.poll() is None, "the worker exited: " + pipe.log_path.read_text()[-3000:]

    publish_raw(broker, cases)

    def all_dead_lettered() -> bool:
        alive()
        return dlq.count() >= len(cases)

    pipe.wait_for(all_dead_lettered, timeout=30)
    letters: list[DeadLetter] = dlq.list(limit=1000)
    for raw in cases:
        found = [dl for dl in letters if raw.marker.encode() in dl.payload_bytes()]
        assert len(found) == 1, f"{raw.name}: {len(found)} dead letters"
        assert found[0].source == "broker"
        assert found[0].context["reason_code"] == raw.code, f"{raw.name}: {found[0].reason}"
        assert raw.code in found[0].reason
    assert len(letters) == len(cases)

    # A valid event published afterwards is still applied.
    course_id = sorted(
        c["sourcedId"] for c in simulator.catalog.records("courses") if c["status"] == "active"
    )[0]
    assert publish_events([envelope(course_id)], settings=pipe.settings).accepted == 1
    pipe.wait_for(lambda: alive() or pipe.generation(course_id) > 0, timeout=30)
    pipe.wait_for(lambda: messages_left(broker) == 0)
    alive()

    port = pipe.env["CB_WORKER_METRICS_PORT"]
    text = pipe.wait_for(
        lambda: "cb_broker_messages_rejected_total{" in scrape(port) and scrape(port)
    )
    rejected = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("cb_broker_messages_rejected_total{")
    )
    assert rejected == len(cases)

    # Nothing was left unacknowledged to come back once the worker lets go of its messages.
    pipe.stop_workers()
    assert worker.returncode == 0
    assert messages_left(broker) == 0
