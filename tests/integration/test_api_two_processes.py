"""Two API processes (``python -m worker.serve``) on the real Redis both see a swap."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from core.bundle.store import BundleStore
from core.keys import Keys
from tests.conftest import TEST_REDIS_URL, _delete_prefix
from tests.worker.api.factory import records, store_course
from worker.supervise import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "integration-read-token"
CHECK_S = 0.5  # the backstop bound the processes run with


class SilentKeys(Keys):
    """Keys whose swap channel nobody listens to: a write whose notice is lost."""

    def swaps_channel(self) -> str:
        return f"{self.prefix}nobody-listens"


@dataclass
class ApiProcess:
    proc: subprocess.Popen[bytes]
    base: str

    def generation(self, course_id: str) -> int:
        lesson = f"{self.base}/v1/courses/{course_id}/units/u0/lessons/l0"
        resp = httpx.get(lesson, headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status_code == 200, resp.text
        return int(resp.headers["x-bundle-generation"])

    def swaps_subscribed(self) -> bool:
        text = httpx.get(self.base + "/metrics").text
        return "cb_api_swap_listener_subscribed 1.0" in text


def _start(key_prefix: str) -> ApiProcess:
    port = free_port()
    env = {
        **os.environ,
        "CB_REDIS_URL": TEST_REDIS_URL,
        "CB_KEY_PREFIX": key_prefix,
        "CB_API_TOKENS": orjson.dumps({TOKEN: ["read"]}).decode(),
        "CB_NEAR_CACHE_CHECK_S": str(CHECK_S),
        "CB_ONEROSTER_BASE_URL": "http://127.0.0.1:9",  # never asked: bundles are pre-stored
        "CB_LOG_LEVEL": "WARNING",
    }
    cmd = [
        sys.executable, "-m", "worker.serve",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    return ApiProcess(proc, f"http://127.0.0.1:{port}")


def _wait_until(check: object, timeout: float) -> float | None:
    """Seconds until ``check()`` held, or None if it never did within ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():  # type: ignore[operator]
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    return None


@pytest.fixture(scope="module")
def shared_prefix() -> Iterator[str]:
    """One key prefix for the module's two processes (started once), removed afterwards."""
    prefix = f"cbtest:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(TEST_REDIS_URL)
    _delete_prefix(client, prefix)
    client.close()


@pytest.fixture(scope="module")
def apis(shared_prefix: str) -> Iterator[tuple[ApiProcess, ApiProcess]]:
    pair = (_start(shared_prefix), _start(shared_prefix))
    try:
        for api in pair:
            ready = _wait_until(lambda api=api: httpx.get(api.base + "/readyz").is_success, 20.0)
            assert ready is not None, "API process did not become ready"
            assert _wait_until(api.swaps_subscribed, 5.0) is not None
        yield pair
    finally:
        for api in pair:
            api.proc.terminate()
        for api in pair:
            try:
                api.proc.wait(10)
            except subprocess.TimeoutExpired:
                api.proc.kill()


@pytest.fixture
def store(real_redis: redis.Redis, shared_prefix: str) -> BundleStore:
    return BundleStore(real_redis, Keys(prefix=shared_prefix))


def test_a_swap_is_seen_by_both_processes_at_once(
    apis: tuple[ApiProcess, ApiProcess], store: BundleStore
) -> None:
    recs = records("course-1")
    gen = store_course(store, recs)["generation"]
    first, second = apis
    assert first.generation("course-1") == second.generation("course-1") == gen  # in memory now
    store_course(store, recs)  # the next generation, announced on the swap channel
    for api in apis:
        seen = _wait_until(lambda api=api: api.generation("course-1") == gen + 1, 5.0)
        assert seen is not None
        assert seen < CHECK_S * 4  # through the notice: no backstop interval needed


def test_a_swap_whose_notice_is_lost_is_seen_within_the_backstop_bound(
    apis: tuple[ApiProcess, ApiProcess],
    store: BundleStore,
    real_redis: redis.Redis,
    shared_prefix: str,
) -> None:
    recs = records("course-2")
    gen = store_course(store, recs)["generation"]
    first, second = apis
    assert first.generation("course-2") == second.generation("course-2") == gen
    silent = BundleStore(real_redis, SilentKeys(prefix=shared_prefix))
    store_course(silent, recs)
    for api in apis:
        seen = _wait_until(lambda api=api: api.generation("course-2") == gen + 1, 10.0)
        assert seen is not None, "the backstop never caught the missed notice"
        # Bounded by the check interval (plus scheduling slack on a busy machine).
        assert seen <= CHECK_S + 3.0
