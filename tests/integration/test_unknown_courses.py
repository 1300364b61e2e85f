"""Unknown course ids on the real Redis: one upstream look-up per negative period, whoever asks,
and nothing left behind that outlives that period (also while OneRoster is down).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from core.bundle.store import BundleStore, Encoding
from core.errors import CourseNotFound, OneRosterUnavailable
from core.keys import Keys
from core.oneroster.models import CourseRecords
from core.settings import Settings
from tests.conftest import TEST_REDIS_URL
from worker.api.services import ApiServices

pytestmark = pytest.mark.integration

NEGATIVE_TTL_S = 30
MARGIN_S = 2


class Upstream:
    """OneRoster knowing no course at all; counts look-ups; ``down`` is an outage."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.down = False
        self._lock = threading.Lock()

    def fetch(self, course_id: str) -> CourseRecords:
        with self._lock:
            self.calls[course_id] += 1
        if self.down:
            raise OneRosterUnavailable("simulated outage", course_id=course_id)
        raise CourseNotFound("no such course upstream", course_id=course_id)


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


def api_process(real_redis: redis.Redis, key_prefix: str, upstream: Upstream) -> ApiServices:
    """One API process's services: its own near cache and flights, the shared Redis."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        redis_url=TEST_REDIS_URL,
        key_prefix=key_prefix,
        negative_ttl_s=NEGATIVE_TTL_S,
        flight_wait_s=10.0,
        log_format="json",
        log_level="WARNING",
    )
    return ApiServices(
        settings=settings,
        redis=redis.Redis.from_url(TEST_REDIS_URL),
        connect=lambda: redis.Redis.from_url(TEST_REDIS_URL),
        fetch=upstream.fetch,
        listen=False,
    )


@pytest.fixture
def processes(
    real_redis: redis.Redis, key_prefix: str, upstream: Upstream
) -> Iterator[tuple[ApiServices, ApiServices]]:
    a = api_process(real_redis, key_prefix, upstream)
    b = api_process(real_redis, key_prefix, upstream)
    yield a, b
    for services in (a, b):
        services.stop()
        services.redis.close()


def keys_left(client: redis.Redis, key_prefix: str) -> dict[str, int]:
    """Every key under the test's prefix with its TTL in ms (-1: none)."""
    return {key.decode(): client.pttl(key) for key in client.scan_iter(match=f"{key_prefix}*")}


def assert_all_expire_soon(left: dict[str, int]) -> None:
    limit_ms = (NEGATIVE_TTL_S + MARGIN_S) * 1000
    lasting = {key: ttl for key, ttl in left.items() if not 0 < ttl <= limit_ms}
    assert not lasting, f"keys that outlive the negative period: {lasting}"


def test_many_requests_from_two_processes_cost_one_upstream_look_up(
    processes: tuple[ApiServices, ApiServices],
    upstream: Upstream,
    real_redis: redis.Redis,
    key_prefix: str,
) -> None:
    def ask(services: ApiServices) -> str:
        try:
            services.reader.get("ghost")
        except CourseNotFound:
            return "not found"
        return "found"

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, [processes[i % 2] for i in range(64)]))

    assert answers == ["not found"] * 64
    assert upstream.calls["ghost"] == 1
    left = keys_left(real_redis, key_prefix)
    assert Keys(prefix=key_prefix).missing("ghost") in left  # the shared negative mark
    assert_all_expire_soon(left)


class SlowFirstRead(BundleStore):
    """A store whose first bundle read waits for ``go``: a process paused between its look."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reading = threading.Event()
        self.go = threading.Event()

    def read(self, course_id: str, encoding: Encoding = "identity") -> Any:
        if not self.go.is_set():
            self.reading.set()
            assert self.go.wait(10.0)
        return super().read(course_id, encoding)


def test_a_process_that_looked_before_another_found_the_id_unknown_does_not_ask_again(
    processes: tuple[ApiServices, ApiServices], upstream: Upstream
) -> None:
    a, b = processes
    slow = SlowFirstRead(b.redis, b.keys)
    b.__dict__["store"] = slow  # before b's reader is built
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(b.reader.get, "ghost")
        assert slow.reading.wait(5.0)  # b saw no negative mark and is reading the store
        with pytest.raises(CourseNotFound):
            a.reader.get("ghost")  # a asks OneRoster, learns the id is unknown, finishes
        slow.go.set()
        with pytest.raises(CourseNotFound):
            pending.result(timeout=10.0)
    assert upstream.calls["ghost"] == 1


def test_probing_during_an_outage_leaves_nothing_lasting(
    processes: tuple[ApiServices, ApiServices],
    upstream: Upstream,
    real_redis: redis.Redis,
    key_prefix: str,
) -> None:
    upstream.down = True
    for course_id in ("ghost-1", "ghost-2", "ghost-3"):
        with pytest.raises(OneRosterUnavailable):
            processes[0].reader.get(course_id)
    assert_all_expire_soon(keys_left(real_redis, key_prefix))
