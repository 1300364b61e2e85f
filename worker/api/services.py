"""Wiring of the API process: the one place that builds clients, stores and services.

``ApiServices.from_settings`` builds the real ones; tests pass a fake Redis, a fake OneRoster
fetch and a fake event sender. Routes only ever see this object (``request.app.state.services``).
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import redis
from redis import Redis

from core.attempts.keys import AttemptKeys
from core.attempts.service import AttemptService
from core.budget.order import queued_since
from core.bundle.holds import PublishHolds
from core.bundle.nearcache import NearCache, SwapListener
from core.bundle.reader import BundleReader, ReaderPolicy
from core.bundle.store import BundleStore
from core.errors import CourseNotFound
from core.events.backlog import BacklogGuard, QueueDepth
from core.events.publisher import EventSender, Publisher
from core.keys import Keys
from core.logging import get_logger
from core.oneroster.models import CourseRecords
from core.pipeline.debounce import Debouncer
from core.pipeline.rebuild import Rebuilder, publish_guard
from core.pipeline.schedule import Schedule, ScheduledRebuilds
from core.ratelimit import TokenBuckets
from core.settings import Settings
from core.singleflight.distributed import DistributedFlight
from core.singleflight.readthrough import NegativeCache

log = get_logger(__name__)

FetchCourse = Callable[[str], CourseRecords]
DeriveAttempt = Callable[[str, str], int]
REDIS_CONNECT_TIMEOUT_S = 2.0
REDIS_SOCKET_TIMEOUT_S = 5.0
REFRESH_THREADS = 2


def connect_redis(url: str) -> redis.Redis:
    """A client with timeouts on every call, kept alive across idle periods."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        socket_keepalive=True,
        health_check_interval=25,
    )


class FlightOnce:
    """Adapts ``DistributedFlight`` to the attempt service's ``OnceRunner``."""

    def __init__(self, flight: DistributedFlight) -> None:
        self._flight = flight

    def run(self, name: str, fn: Callable[[], int]) -> int:
        return int(self._flight.run(name, lambda lease: fn()).value)


@dataclass
class ApiServices:
    """Everything the routes call, built lazily from one ``Settings``."""

    settings: Settings
    redis: Redis
    connect: Callable[[], Redis]
    fetch: FetchCourse | None = None
    derive: DeriveAttempt | None = None
    sender: EventSender | None = None
    listen: bool = True
    swap_poll_s: float = 0.2
    budget_observer: Any = None  # metrics of the upstream budget (set by the app)
    _oneroster: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiServices:
        """The real wiring: Redis from ``CB_REDIS_URL``, OneRoster and broker from settings."""
        return cls(
            settings=settings,
            redis=connect_redis(settings.redis_url),
            connect=lambda: connect_redis(settings.redis_url),
        )

    @cached_property
    def keys(self) -> Keys:
        return Keys(prefix=self.settings.key_prefix)

    @cached_property
    def store(self) -> BundleStore:
        return BundleStore.from_settings(self.redis, self.keys, self.settings)

    @cached_property
    def near_cache(self) -> NearCache:
        s = self.settings
        return NearCache(s.near_cache_max_courses, max_bytes=s.near_cache_max_bytes)

    @cached_property
    def rebuild_soon(self) -> ScheduledRebuilds:
        """A damaged stored bundle is rebuilt by a worker, soon, through the durable schedule."""
        s = self.settings
        return ScheduledRebuilds(
            Debouncer(
                self.redis,
                self.keys,
                debounce_s=s.debounce_s,
                max_wait_s=s.debounce_max_wait_s,
                lease_ms=s.rebuild_lease_ms,
            ),
            Schedule(self.redis, self.keys, shards=s.schedule_shards),
        )

    @cached_property
    def flight(self) -> DistributedFlight:
        return DistributedFlight.from_settings(self.redis, self.keys, self.settings)

    @cached_property
    def refresher(self) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(
            max_workers=REFRESH_THREADS, thread_name_prefix="bundle-refresh"
        )

    @cached_property
    def rebuilder(self) -> Rebuilder:
        # Guarded like the worker's: a stale refresh here must not publish a blip either. Its held
        # builds are re-read by the worker's reconcile (no schedule here).
        holds = PublishHolds(
            self.redis, self.keys, removals_ttl_s=self.settings.publish_removals_ttl_s
        )
        return Rebuilder(self.store, self._fetch, guard=publish_guard(holds, self.settings))

    @cached_property
    def reader(self) -> BundleReader:
        s = self.settings
        return BundleReader(
            self.store,
            self.near_cache,
            keys=self.keys,
            build=self._build,
            flight=self.flight,
            negative=NegativeCache(self.redis, self.keys.missing, ttl_ms=s.negative_ttl_s * 1000),
            policy=ReaderPolicy(
                check_s=s.near_cache_check_s,
                fresh_s=float(s.bundle_fresh_s),
                negative_ttl_s=float(s.negative_ttl_s),
                listing_ttl_s=s.near_cache_check_s,
            ),
            background=self.refresher,
            request_rebuild=self.rebuild_soon,
        )

    @cached_property
    def swaps(self) -> SwapListener:
        return SwapListener(
            self.connect, self.keys.swaps_channel(), self.near_cache, poll_s=self.swap_poll_s
        )

    @cached_property
    def publisher(self) -> Publisher:
        from core.events.broker import default_backlog, default_sender  # noqa: PLC0415 - Celery

        s = self.settings
        backlog: BacklogGuard | None
        if self.sender is None:
            sender: EventSender = default_sender(s)
            backlog = default_backlog(s)
        else:
            sender = self.sender
            backlog = None
            if s.event_backlog_max > 0 and isinstance(sender, QueueDepth):
                backlog = BacklogGuard(sender, limit=s.event_backlog_max)
        return Publisher(
            self.redis, self.keys, sender, dedupe_ttl_s=s.event_dedupe_ttl_s, backlog=backlog
        )

    @cached_property
    def cold_builds(self) -> TokenBuckets:
        """Cold builds a token may cause: ``CB_COLD_BUILDS_PER_TOKEN`` a minute, as a burst too."""
        per_minute = self.settings.cold_builds_per_token
        return TokenBuckets(per_minute / 60.0, per_minute)

    @cached_property
    def attempts(self) -> AttemptService:
        s = self.settings
        return AttemptService(
            self.redis,
            AttemptKeys.from_settings(s),
            derive=self._derive,
            once=FlightOnce(self.flight),
            ttl_s=s.attempt_state_ttl_s,
        )

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the swap-notice listener (the near cache is only used with it running)."""
        if self.listen:
            self.swaps.start()

    def stop(self) -> None:
        """Stop background threads and close clients."""
        if self.listen:
            self.swaps.stop()
        self.refresher.shutdown(wait=False, cancel_futures=True)
        if "flight" in self.__dict__:  # built (cached_property): close its kept connections
            self.flight.close()
        if self._oneroster is not None:
            self._oneroster.close()

    # --- readiness ------------------------------------------------------------------------------
    def check_redis(self) -> None:
        """Raise unless Redis answers PING."""
        self.redis.ping()

    def check_broker(self) -> None:
        """Raise unless the broker accepts a connection (Redis brokers answer PING)."""
        url = self.settings.effective_broker_url
        if url == self.settings.redis_url:
            self.redis.ping()
            return
        if url.partition("://")[0].lower().startswith(("redis", "rediss")):
            client = connect_redis(url)
            try:
                client.ping()
            finally:
                client.close()
            return
        from kombu import Connection  # type: ignore[attr-defined]  # noqa: PLC0415 - AMQP only

        with Connection(url, connect_timeout=REDIS_CONNECT_TIMEOUT_S) as conn:  # type: ignore[no-untyped-call]
            conn.ensure_connection(max_retries=1, timeout=REDIS_CONNECT_TIMEOUT_S)

    # --- upstream -------------------------------------------------------------------------------
    def _client(self) -> Any:
        with self._lock:
            if self._oneroster is None:
                from core.budget.gate import (  # noqa: PLC0415
                    connect_budget_redis,
                    gate_from_settings,
                )
                from core.oneroster.client import OneRosterClient  # noqa: PLC0415

                # Readers and attempt resolves wait on these requests: interactive.
                gate = gate_from_settings(
                    self.settings,
                    connect_budget_redis(self.settings.redis_url),
                    observer=self.budget_observer,
                )
                self._oneroster = OneRosterClient(
                    self.settings, gate=gate, request_class="interactive"
                )
            return self._oneroster

    def _fetch(self, course_id: str) -> CourseRecords:
        if self.fetch is not None:
            return self.fetch(course_id)
        from core.oneroster.fetch import fetch_course_records  # noqa: PLC0415

        # Every request of one build queues as of the build's start: oldest builds go first.
        with queued_since():
            return fetch_course_records(self._client(), course_id)

    def _build(self, course_id: str) -> None:
        outcome = self.rebuilder.rebuild(course_id)
        if outcome.outcome == "not_found":
            raise CourseNotFound("course not found upstream", course_id=course_id)

    def _derive(self, user_id: str, resource_id: str) -> int:
        if self.derive is not None:
            return self.derive(user_id, resource_id)
        from core.oneroster.attempts import derive_next_attempt  # noqa: PLC0415

        with queued_since():
            return derive_next_attempt(
                self._client(),
                user_id,
                resource_id,
                suffix=self.settings.oneroster_line_item_suffix,
            )
