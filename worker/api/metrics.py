"""Prometheus metrics of one API process, in the app's own registry.

Request counts and latency are recorded by ``MetricsMiddleware`` (pure ASGI, label children
cached); near-cache, swap-listener and single-flight numbers are read at scrape time from the
counters the core keeps, so the hot path only bumps plain integers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.bundle.integrity import GLOBAL_CORRUPTION_STATS
from core.bundle.nearcache import NearCache, SwapListener
from core.singleflight.stats import GLOBAL_STATS, FlightStats

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
UNMATCHED = "unmatched"


class ApiMetrics:
    """The API's metric objects, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "cb_api_requests_total",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cb_api_request_duration_seconds",
            "Time to answer, by route template",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stale = Counter(
            "cb_api_stale_responses_total",
            "Answers served with X-Bundle-Stale: true",
            registry=self.registry,
        )
        self.bytes_served = Counter(
            "cb_api_bundle_bytes_served_total",
            "Body bytes of bundle-derived answers, by what was served and its encoding",
            ["part", "encoding"],
            registry=self.registry,
        )
        self.not_modified = Counter(
            "cb_api_not_modified_total",
            "Conditional requests answered 304",
            registry=self.registry,
        )
        self.disconnects = Counter(
            "cb_api_client_disconnects_total",
            "Requests whose client went away before the body was read (not in the request count)",
            ["route"],
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}
        self._bytes_children: dict[tuple[str, str], Any] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        key = (route, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(route, method, str(status))
        child.inc()
        timer = self._latency_children.get(route)
        if timer is None:
            timer = self._latency_children[route] = self.latency.labels(route)
        timer.observe(seconds)

    def disconnected(self, route: str) -> None:
        """Count one request abandoned by its client."""
        self.disconnects.labels(route).inc()

    def served(self, part: str, encoding: str, size: int) -> None:
        """Count body bytes of a bundle-derived answer."""
        key = (part, encoding)
        child = self._bytes_children.get(key)
        if child is None:
            child = self._bytes_children[key] = self.bytes_served.labels(part, encoding)
        child.inc(size)

    def render(self) -> bytes:
        """The Prometheus text exposition of the registry."""
        return generate_latest(self.registry)


class CoreCollector(Collector):
    """Near-cache, swap-listener and single-flight counters, read at scrape time."""

    def __init__(
        self,
        cache: Callable[[], NearCache | None],
        listener: Callable[[], SwapListener | None],
        flights: FlightStats = GLOBAL_STATS,
    ) -> None:
        self._cache = cache
        self._listener = listener
        self._flights = flights

    def collect(self) -> Iterator[Any]:
        cache = self._cache()
        if cache is not None:
            s = cache.stats
            yield _counter("cb_api_near_cache_hits", "Reads answered from the near cache", s.hits)
            yield _counter(
                "cb_api_near_cache_misses", "Reads that went to the store or a build", s.misses
            )
            yield _counter(
                "cb_api_near_cache_checks", "Backstop generation checks (one HMGET each)", s.checks
            )
            yield _counter(
                "cb_api_near_cache_checks_changed",
                "Backstop checks that found a newer generation (a missed notice)",
                s.checks_changed,
            )
            yield _counter("cb_api_near_cache_evictions", "Courses evicted (LRU)", s.evictions)
            yield _counter("cb_api_near_cache_resets", "Whole-cache clears", s.resets)
            yield _counter("cb_api_swap_notices", "Swap notices received", s.notices)
            yield _gauge("cb_api_near_cache_courses", "Courses in the near cache", len(cache))
            yield _gauge(
                "cb_api_near_cache_bytes", "Bytes the near cache accounts for", cache.nbytes
            )
        damage = GLOBAL_CORRUPTION_STATS
        yield _counter(
            "cb_bundle_corruption_reports", "Damaged stored keys reported", damage.reports
        )
        yield _counter(
            "cb_bundle_corruption_rebuilds",
            "Rebuilds asked for because a stored bundle was damaged",
            damage.rebuilds_requested,
        )
        yield _counter(
            "cb_bundle_index_repairs", "Damaged shared index keys rebuilt", damage.indexes_repaired
        )
        listener = self._listener()
        if listener is not None:
            yield _gauge(
                "cb_api_swap_listener_subscribed",
                "1 while subscribed to the swap channel",
                1.0 if listener.subscribed.is_set() else 0.0,
            )
            yield _counter(
                "cb_api_swap_listener_reconnects",
                "Times the swap subscription was lost",
                listener.reconnects,
            )
        snap = self._flights.snapshot()
        for name, value in snap.items():
            metric = f"cb_singleflight_{name}"
            if name.startswith("joiners_per_flight"):
                yield _gauge(metric, f"single-flight {name.replace('_', ' ')}", value)
            else:
                yield _counter(metric, f"single-flight {name.replace('_', ' ')}", value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class MetricsMiddleware:
    """Records every request under its route template (``unmatched`` for unknown routes);
    a request its client abandoned is counted apart, never as a 500."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        abandoned = False
        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            abandoned = True
            raise
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            if abandoned:
                self.metrics.disconnected(template)
            else:
                self.metrics.observe(
                    template, scope.get("method", ""), status, time.perf_counter() - started
                )
