"""A real Celery worker process (not eager mode) wired to the simulator and a test Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kombu
import pytest
import redis

from core.bundle.store import BundleStore
from core.keys import Keys
from core.settings import Settings
from tests.conftest import TEST_REDIS_PORT

ROOT = Path(__file__).resolve().parents[2]
REDIS_BROKER_URL = f"redis://127.0.0.1:{TEST_REDIS_PORT}/10"


def purge_broker(broker_url: str) -> None:
    """Drop our queues' messages so one run never sees another's leftovers."""
    if broker_url.startswith("redis://"):
        client = redis.Redis.from_url(broker_url)
        for key in client.scan_iter(match="*", count=1000):
            name = key.decode()
            if name.startswith(("events", "rebuilds", "unacked", "_kombu")) or name in {
                "celery",
            }:
                client.delete(key)
        client.close()
        return
    from kombu import Connection

    with Connection(broker_url, connect_timeout=5) as conn:
        channel = conn.channel()
        for queue in ("events", "rebuilds"):
            try:
                channel.queue_purge(queue)
            except Exception:
                channel = conn.channel()


def drain(broker_url: str, queue: str, count: int) -> list[Any]:
    """Consume ``count`` messages (what a worker would do); the queue is empty after."""
    with kombu.Connection(broker_url) as conn:
        simple = conn.SimpleQueue(queue)
        try:
            messages = [simple.get(timeout=5) for _ in range(count)]
            for message in messages:
                message.ack()
            with pytest.raises(simple.Empty):
                simple.get(timeout=0.2)
        finally:
            simple.close()
    return messages


@dataclass
class Pipeline:
    """Settings shared by the test process and the worker process, plus handles to both."""

    settings: Settings
    env: dict[str, str]
    redis: redis.Redis
    keys: Keys
    store: BundleStore
    log_path: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self, *, concurrency: int = 2, extra: list[str] | None = None) -> None:
        log = self.log_path.open("ab")
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.celery_app:app",
            "worker",
            "-Q",
            "events,rebuilds",
            "--concurrency",
            str(concurrency),
            "--pool",
            "prefork",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "WARNING",
            "-n",
            f"test-{os.getpid()}-{len(self.procs)}@%h",
            *(extra or []),
        ]
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)

    def stop_workers(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.procs.clear()

    def generation(self, course_id: str) -> int:
        return self.store.generation(course_id) or 0

    def wait_for(self, predicate: Callable[[], Any], *, timeout: float = 20.0) -> Any:
        """Poll until predicate() is truthy; fail with the worker log tail otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-4000:]
        raise AssertionError(f"condition not met within {timeout}s; worker log tail:\n{tail}")

    def wait_quiet(self, course_id: str, *, settle: float = 1.0, timeout: float = 30.0) -> int:
        """Wait until the course is clean and its generation stops moving; return it."""
        debounce_key = self.keys.dirty(course_id)
        deadline = time.monotonic() + timeout
        last = -1
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            gen = self.generation(course_id)
            busy = self.redis.exists(debounce_key) or self.redis.exists(
                self.keys.rebuild_lease(course_id)
            )
            if gen != last or busy:
                last = gen
                stable_since = time.monotonic()
            elif time.monotonic() - stable_since >= settle:
                return gen
            time.sleep(0.05)
        raise AssertionError(f"course {course_id} never settled (generation {last})")


def make_pipeline(
    *,
    sim_url: str,
    key_prefix: str,
    broker_url: str,
    redis_url: str,
    log_path: Path,
    debounce_s: float = 0.25,
    worker_metrics_port: int = 0,
) -> Pipeline:
    env = {
        **os.environ,
        "CB_REDIS_URL": redis_url,
        "CB_BROKER_URL": broker_url,
        "CB_KEY_PREFIX": key_prefix,
        "CB_ONEROSTER_BASE_URL": sim_url,
        "CB_DEBOUNCE_S": str(debounce_s),
        "CB_DEBOUNCE_MAX_WAIT_S": "3",
        "CB_ONEROSTER_MAX_ATTEMPTS": "3",
        "CB_ONEROSTER_DEADLINE_S": "5",
        "CB_WORKER_METRICS_PORT": str(worker_metrics_port),
        "CB_LOG_FORMAT": "json",
        "CB_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    settings = Settings(
        _env_file=None,
        redis_url=redis_url,
        broker_url=broker_url,
        key_prefix=key_prefix,
        oneroster_base_url=sim_url,
        debounce_s=debounce_s,
    )
    client = redis.Redis.from_url(redis_url)
    keys = Keys(prefix=key_prefix)
    return Pipeline(settings, env, client, keys, BundleStore(client, keys), log_path)
