"""Per-process wiring of core objects for the worker (created lazily, reset after fork)."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from functools import cached_property

import redis

from core.budget.classes import request_class
from core.budget.gate import Gate, connect_budget_redis, gate_from_settings
from core.bundle.holds import PublishHolds
from core.bundle.limits import BundleLimits
from core.bundle.store import BundleStore
from core.events.dlq import DeadLetters
from core.keys import Keys
from core.oneroster.client import OneRosterClient
from core.oneroster.fetch import (
    course_changed_since,
    courses_linking_resource,
    fetch_course_records,
)
from core.oneroster.models import CourseRecords
from core.pipeline.debounce import Debouncer
from core.pipeline.failures import FailurePolicy
from core.pipeline.intake import EventIntake
from core.pipeline.rebuild import PublishGuard, Rebuilder, publish_guard
from core.pipeline.schedule import Schedule
from core.settings import Settings, get_settings
from core.singleflight.distributed import DistributedFlight


@dataclass
class Runtime:
    """The objects a worker process needs, built from one Settings."""

    settings: Settings

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.settings.redis_url, health_check_interval=25, socket_keepalive=True
        )

    @cached_property
    def rebuild_failures(self) -> FailurePolicy:
        return FailurePolicy(max_retries=self.settings.rebuild_max_retries)

    @cached_property
    def event_failures(self) -> FailurePolicy:
        return FailurePolicy(max_retries=self.settings.event_max_retries)

    @cached_property
    def keys(self) -> Keys:
        return Keys(prefix=self.settings.key_prefix)

    @cached_property
    def store(self) -> BundleStore:
        return BundleStore.from_settings(self.redis, self.keys, self.settings)

    @cached_property
    def budget_gate(self) -> Gate | None:
        """The fleet's upstream budget (docs/oneroster.md "Upstream budget")."""
        from worker.metrics import BudgetMetrics  # noqa: PLC0415 - prometheus only where used

        client = connect_budget_redis(self.settings.redis_url)
        return gate_from_settings(self.settings, client, observer=BudgetMetrics())

    @cached_property
    def holds(self) -> PublishHolds:
        return PublishHolds(
            self.redis, self.keys, removals_ttl_s=self.settings.publish_removals_ttl_s
        )

    @cached_property
    def guard(self) -> PublishGuard:
        return publish_guard(self.holds, self.settings)

    @cached_property
    def oneroster(self) -> OneRosterClient:
        # Rebuilds here are for events; warm and reconcile mark theirs background.
        return OneRosterClient(self.settings, gate=self.budget_gate, request_class="event")

    @cached_property
    def debouncer(self) -> Debouncer:
        s = self.settings
        return Debouncer(
            self.redis,
            self.keys,
            debounce_s=s.debounce_s,
            max_wait_s=s.debounce_max_wait_s,
            lease_ms=s.rebuild_lease_ms,
            park_ttl_s=s.rebuild_park_ttl_s,
        )

    @cached_property
    def schedule(self) -> Schedule:
        s = self.settings
        return Schedule(
            self.redis,
            self.keys,
            shards=s.schedule_shards,
            claim_lease_ms=s.schedule_claim_lease_ms,
        )

    @cached_property
    def flight(self) -> DistributedFlight:
        return DistributedFlight.from_settings(self.redis, self.keys, self.settings)

    @cached_property
    def dlq(self) -> DeadLetters:
        return DeadLetters(self.redis, self.keys)

    def fetch(self, course_id: str) -> CourseRecords:
        return fetch_course_records(self.oneroster, course_id)

    @cached_property
    def rebuilder(self) -> Rebuilder:
        return Rebuilder(
            self.store,
            self.fetch,
            limits=BundleLimits.from_settings(self.settings),
            guard=self.guard,
        )

    @cached_property
    def intake(self) -> EventIntake:
        return EventIntake(
            self.redis,
            self.keys,
            self.store,
            self.debouncer,
            holds=self.holds,
            resource_courses_upstream=lambda rid: courses_linking_resource(self.oneroster, rid),
            dedupe_ttl_s=self.settings.event_dedupe_ttl_s,
            fanout_max=self.settings.resource_fanout_max,
        )

    def changed_since(self, course_id: str, since: dt.datetime) -> bool:
        with request_class("background"):  # reconcile's drift probes
            return course_changed_since(self.oneroster, course_id, since)


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """This process's runtime, built on first use."""
    global _runtime  # noqa: PLW0603
    with _lock:
        if _runtime is None:
            _runtime = Runtime(get_settings())
        return _runtime
