"""An API on fake Redis with a fake OneRoster and a fake broker, built per test."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import pytest
from fastapi.testclient import TestClient

from core.bundle.store import BundleStore
from core.errors import BrokerUnavailable, CourseNotFound, OneRosterUnavailable
from core.oneroster.models import CourseRecords
from core.settings import Settings
from core.singleflight.distributed import DistributedFlight
from tests.worker.api.factory import records, store_course
from worker.api.app import create_app
from worker.api.services import ApiServices

TOKENS = {
    "read-token": ["read"],
    "attempts-token": ["attempts"],
    "events-token": ["events"],
    "all-token": ["read", "attempts", "events"],
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


READ = bearer("read-token")
ATTEMPTS = bearer("attempts-token")
EVENTS = bearer("events-token")


@dataclass
class FakeUpstream:
    """OneRoster as the rebuild sees it: known courses, a call count, an outage switch."""

    courses: dict[str, CourseRecords] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    down: bool = False
    delay_s: float = 0.0
    attempt_number: int = 1
    derive_calls: int = 0
    hold: dict[str, threading.Event] = field(default_factory=dict)  # fetch waits until set
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fetch(self, course_id: str) -> CourseRecords:
        with self._lock:
            self.calls[course_id] += 1
        if course_id in self.hold:
            assert self.hold[course_id].wait(10.0), "a held fetch was never released"
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.down:
            raise OneRosterUnavailable("simulated outage", course_id=course_id)
        found = self.courses.get(course_id)
        if found is None:
            raise CourseNotFound("no such course upstream", course_id=course_id)
        return found

    def derive(self, user_id: str, resource_id: str) -> int:
        with self._lock:
            self.derive_calls += 1
        if self.down:
            raise OneRosterUnavailable("simulated outage", user_id=user_id)
        return self.attempt_number


@dataclass
class FakeSender:
    """The broker: keeps what it is sent, or refuses everything while ``down``."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False

    def send(self, envelopes: Sequence[dict[str, Any]]) -> None:
        if self.down:
            raise BrokerUnavailable("simulated broker outage", events=len(envelopes))
        self.sent.extend(dict(e) for e in envelopes)


@dataclass
class Api:
    client: TestClient
    services: ApiServices
    store: BundleStore
    upstream: FakeUpstream
    sender: FakeSender
    server: fakeredis.FakeServer

    def put(self, course_id: str = "course-1", **kwargs: Any) -> dict[str, Any]:
        """Make the course known upstream and store its bundle (as the worker would)."""
        built_at = kwargs.pop("built_at", None)
        recs = records(course_id, **kwargs)
        self.upstream.courses[course_id] = recs
        return dict(store_course(self.store, recs, built_at=built_at))

    def known(self, course_id: str = "course-1", **kwargs: Any) -> None:
        """Make the course known upstream only (its bundle is built on first read)."""
        self.upstream.courses[course_id] = records(course_id, **kwargs)


def settings_for(key_prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "key_prefix": key_prefix,
        "api_tokens": TOKENS,
        "near_cache_check_s": 60.0,
        "negative_ttl_s": 30,
        "bundle_fresh_s": 3600,
        "flight_wait_s": 5.0,
        "log_format": "json",
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


MakeApi = Callable[..., Api]


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def make_api(key_prefix: str, server: fakeredis.FakeServer) -> Iterator[MakeApi]:
    """Builds APIs (lifespan running, swap listener subscribed) sharing one fake Redis."""
    opened: list[TestClient] = []

    def make(*, listen: bool = True, coalesce: bool = True, **overrides: Any) -> Api:
        settings = settings_for(key_prefix, **overrides)
        upstream, sender = FakeUpstream(), FakeSender()
        services = ApiServices(
            settings=settings,
            redis=fakeredis.FakeRedis(server=server),
            connect=lambda: fakeredis.FakeRedis(server=server),
            fetch=upstream.fetch,
            derive=upstream.derive,
            sender=sender,
            listen=listen,
            swap_poll_s=0.02,
        )
        if not coalesce:  # only to show what coalescing prevents
            services.flight = DistributedFlight(services.redis, services.keys, enabled=False)
        client = TestClient(create_app(services=services))
        client.__enter__()
        opened.append(client)
        if listen:
            assert services.swaps.subscribed.wait(5.0), "swap listener did not subscribe"
        return Api(client, services, services.store, upstream, sender, server)

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_api: MakeApi) -> Api:
    return make_api()


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``check`` until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()
