"""Stale-while-revalidate read-through: one build per key across threads and processes.

A fresh value is a hit. A missing value is built once (in-process single-flight in front of
the cross-process flight) and read again. A stale value is served at once while one refresh
runs; if the refresh fails, the stale value is what callers keep getting. "Not found" is
remembered briefly so a missing key does not send every caller upstream.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import redis

from core.errors import BundlesError, CourseNotFound, FlightFailed
from core.logging import get_logger
from core.singleflight.distributed import DistributedFlight, FlightLease, FlightOutcome
from core.singleflight.local import SingleFlight

V = TypeVar("V")

log = get_logger(__name__)

Source = Literal["hit", "built", "stale", "fallback"]

# What the flight itself carries (the value travels through the store, not the flight).
_BUILT, _ALREADY_FRESH, _READABLE = "built", "fresh", "readable"


@dataclass(frozen=True, slots=True)
class Cached(Generic[V]):
    """A stored value and whether it is past its freshness."""

    value: V
    stale: bool


@dataclass(frozen=True, slots=True)
class ReadResult(Generic[V]):
    """What a reader gets: the value, whether it is stale, and where it came from."""

    value: V
    stale: bool
    source: Source


class NegativeCache:
    """Remembers "not found" per key in Redis for ``ttl_ms``."""

    def __init__(
        self, client: redis.Redis, key_of: Callable[[str], str], *, ttl_ms: int = 30_000
    ) -> None:
        self.redis = client
        self.key_of = key_of
        self.ttl_ms = ttl_ms

    def is_missing(self, key: str) -> bool:
        return bool(self.redis.exists(self.key_of(key)))

    def remember(self, key: str) -> None:
        self.redis.set(self.key_of(key), b"1", px=self.ttl_ms)

    def clear(self, key: str) -> None:
        self.redis.delete(self.key_of(key))


class ReadThrough(Generic[V]):
    """Reads ``key`` from a store, building it at most once at a time when missing or stale.

    ``build`` writes the store (its return value is ignored). With ``background``, stale
    reads refresh on that executor; without it, the caller that starts the refresh waits for
    it (falling back to the stale value on failure) and concurrent callers get the stale value.
    """

    def __init__(
        self,
        *,
        read: Callable[[str], Cached[V] | None],
        build: Callable[[str, FlightLease], Any],
        flight: DistributedFlight,
        negative: NegativeCache,
        not_found: type[Exception] = CourseNotFound,
        background: concurrent.futures.Executor | None = None,
        local: SingleFlight[Any] | None = None,
        flight_name: Callable[[str], str] | None = None,
    ) -> None:
        self.read = read
        self.build = build
        self.flight = flight
        self.negative = negative
        self.not_found = not_found
        self.background = background
        self.local: SingleFlight[Any] = (
            local
            if local is not None
            else SingleFlight(enabled=flight.enabled, stats=flight.stats, name="readthrough")
        )
        self.flight_name = flight_name or (lambda key: f"read:{key}")

    def get(self, key: str, *, wait_s: float | None = None) -> ReadResult[V]:
        """The value of ``key``: a hit, freshly built, stale (refresh under way) or a fallback."""
        if self.negative.is_missing(key):
            raise self._not_found(key)
        cached = self.read(key)
        if cached is None:
            return self._revalidate(key, None, wait_s)
        if not cached.stale:
            return ReadResult(cached.value, False, "hit")
        if self.local.in_flight(self.flight_name(key)):
            return ReadResult(cached.value, True, "stale")
        if self.background is None:
            return self._revalidate(key, cached, wait_s)
        try:
            self.background.submit(self._refresh, key, cached)
        except RuntimeError:  # executor shut down: serve stale, the next reader retries
            log.warning("stale refresh not started: executor shut down", key=key)
        return ReadResult(cached.value, True, "stale")

    def _refresh(self, key: str, stale: Cached[V]) -> None:
        try:
            self._revalidate(key, stale, None)
        except Exception as exc:  # noqa: BLE001 - stale value stays; next stale read retries
            log.warning("stale refresh failed", key=key, outcome="error", error=str(exc))

    def _revalidate(self, key: str, stale: Cached[V] | None, wait_s: float | None) -> ReadResult[V]:
        """Build ``key`` once across callers, then read it; fall back to ``stale`` on failure."""
        name = self.flight_name(key)
        wait = self.flight.wait_s if wait_s is None else wait_s

        def run() -> tuple[FlightOutcome[str], Cached[V] | None]:
            outcome = self.flight.run(
                name,
                lambda lease: self._lead(key, lease),
                wait_s=wait,
                fallback=lambda: _READABLE if self.read(key) is not None else None,
            )
            return outcome, self.read(key)  # one read shared by every local caller

        try:
            outcome, cached = self.local.do(name, run, timeout=wait)
        except self.not_found:
            raise
        except FlightFailed as exc:
            if exc.context.get("error_type") == self.not_found.__name__ or (
                self.negative.is_missing(key)
            ):
                raise self._not_found(key) from exc
            return self._fall_back(key, stale, exc)
        except Exception as exc:  # noqa: BLE001 - any build failure: stale value or re-raise
            return self._fall_back(key, stale, exc)
        if cached is None:
            missing = FlightFailed("the flight finished but left nothing to read", key=key)
            return self._fall_back(key, stale, missing)
        source: Source = "fallback" if outcome.fell_back else "built"
        return ReadResult(cached.value, cached.stale, source)

    def _lead(self, key: str, lease: FlightLease) -> str:
        # Another process may have finished a build between our read and our lease.
        again = self.read(key)
        if again is not None and not again.stale:
            return _ALREADY_FRESH
        try:
            self.build(key, lease)
        except self.not_found:
            self.negative.remember(key)
            raise
        return _BUILT

    def _fall_back(self, key: str, stale: Cached[V] | None, exc: Exception) -> ReadResult[V]:
        if stale is None:
            raise exc
        self.flight.stats.record_fallback()
        log.warning(
            "refresh failed; serving stale value", key=key, outcome="fallback", error=str(exc)
        )
        return ReadResult(stale.value, True, "fallback")

    def _not_found(self, key: str) -> Exception:
        if issubclass(self.not_found, BundlesError):
            return self.not_found("not found upstream (remembered briefly)", key=key)
        return self.not_found(f"{key}: not found upstream (remembered briefly)")
