"""Scenario: the broker restarts while debounced rebuilds are pending, on Redis and on RabbitMQ.

Delayed rebuilds used to be countdown messages the worker held unacknowledged; on a lost Redis
broker connection Celery 5.7 / kombu 5.7 then exited with an "Unrecoverable error". Now they are
entries of the durable schedule in the data Redis, so the broker holds nothing but immediate
work: the worker rides out the restart and every pending rebuild still runs once it is back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from core.events.publisher import publish_events
from core.pipeline.debounce import Debouncer
from core.pipeline.schedule import Schedule
from tests.faults import figures
from tests.faults.harness import RedisServer, System, running_system, small_catalog, wait_until
from tests.faults.oracle import make_event
from tests.faults.rabbit import RabbitNode
from worker.simulator.catalog import generate_catalog
from worker.simulator.testing import run_simulator_in_thread

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(300)]

SCENARIO = "broker restart"
ROUNDS = {"redis": 3, "amqp": 1}
DEBOUNCE_S = 4.0  # long enough that the trailing rebuilds are still pending at the restart


class Broker:
    """The broker a scenario owns and restarts: a private redis-server or RabbitMQ node."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.redis: RedisServer | None = None
        self.rabbit: RabbitNode | None = None
        if kind == "redis":
            home = workdir / "broker"
            home.mkdir()
            self.redis = RedisServer(home)
        else:
            self.rabbit = RabbitNode()

    def start(self) -> None:
        if self.redis is not None:
            self.redis.start()
        else:
            cast(RabbitNode, self.rabbit).start()

    def url(self) -> str:
        return self.redis.url(0) if self.redis is not None else cast(RabbitNode, self.rabbit).url()

    def held(self) -> int:
        """Messages the broker has handed out and not had acknowledged (Redis broker only)."""
        if self.redis is None:
            return 0
        client = self.redis.client(0)
        try:
            return cast(int, client.hlen("unacked"))
        finally:
            client.close()

    def restart(self) -> float:
        if self.redis is not None:
            # A clean SHUTDOWN was the restart that always crashed the old worker.
            return self.redis.restart_empty(down_s=1.0, graceful=True)
        return cast(RabbitNode, self.rabbit).restart(down_s=1.0)

    def close(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.rabbit is not None:
            self.rabbit.close()


@contextlib.contextmanager
def owned_broker(kind: str, workdir: Path) -> Iterator[Broker]:
    broker = Broker(kind, workdir)
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


def _publish(system: System, course_id: str) -> None:
    event = make_event("course.updated", course_id, course_id)
    wait_until(
        lambda: publish_events(event, settings=system.settings).accepted == 1,
        timeout=30,
        what="the broker takes an event",
    )


@pytest.mark.parametrize("kind", ["redis", "amqp"])
def test_the_worker_survives_broker_restarts_while_delayed_rebuilds_are_pending(
    tmp_path: Path, kind: str
) -> None:
    catalog = generate_catalog(small_catalog(2, seed=22))
    course_ids = [c["sourcedId"] for c in catalog.records("courses")][:2]
    with (
        owned_broker(kind, tmp_path) as broker,
        run_simulator_in_thread(catalog=catalog) as sim,
        running_system(
            tmp_path,
            sim.base_url,
            overrides={
                "CB_BROKER_URL": broker.url(),
                "CB_DEBOUNCE_S": str(DEBOUNCE_S),
                "CB_DEBOUNCE_MAX_WAIT_S": "30",
            },
        ) as system,
    ):
        store = system.store()
        schedule = Schedule(system.redis(), system.keys)
        debouncer = Debouncer(system.redis(), system.keys, debounce_s=DEBOUNCE_S)
        worker = system.start_worker()
        # Leading edges: every course is built once, so the pipeline is known to flow.
        for course_id in course_ids:
            _publish(system, course_id)
        wait_until(
            lambda: all(store.generation(c) for c in course_ids), timeout=60, what="first builds"
        )
        restarts: list[float] = []
        pending_at_restart: list[int] = []
        for _ in range(ROUNDS[kind]):
            before = {c: cast(int, store.generation(c)) for c in course_ids}
            # Inside the debounce window: each course gets one trailing rebuild, scheduled.
            for course_id in course_ids:
                _publish(system, course_id)
            wait_until(lambda: schedule.size() >= len(course_ids), timeout=30, what="scheduled")
            assert broker.held() == 0  # nothing delayed waits in a worker or on the broker
            pending_at_restart.append(schedule.size())
            restarts.append(broker.restart())
            with contextlib.suppress(AssertionError):
                wait_until(lambda: not worker.alive(), timeout=4, what="the worker exiting")
            assert worker.alive(), worker.log()[-3000:]
            try:
                wait_until(
                    lambda b=before: all(
                        (store.generation(c) or 0) > b[c] and not debouncer.is_dirty(c)
                        for c in course_ids
                    ),
                    timeout=60,
                    what="the pending rebuilds ran after the restart",
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{system.log_tail()}") from None
        assert schedule.size() == 0
    figures.record(SCENARIO, f"worker exits on a {kind} broker restart (rebuilds pending)", 0)
    figures.record(
        SCENARIO, f"{kind} broker down, s (median)", sorted(restarts)[len(restarts) // 2]
    )
    figures.record(
        SCENARIO, f"{kind} delayed rebuilds pending at each restart", str(pending_at_restart)
    )
