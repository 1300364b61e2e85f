"""Thread-safe single-flight counters that the metrics layer exports (and may mirror live)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from core.logging import get_logger

log = get_logger(__name__)

Listener = Callable[[str, float], None]

# Event names handed to listeners; each ``record_*`` emits exactly one of them.
LED = "led"
JOINED = "joined"  # value: seconds the joiner waited
FLIGHT_DONE = "flight_done"  # value: how many callers joined that flight
TAKEOVER = "takeover"
FALLBACK = "fallback"
TIMEOUT = "timeout"


class FlightStats:
    """Counts flights led, joiners (and their waits), takeovers, fallbacks and timeouts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self.led = 0
        self.joined = 0
        self.takeovers = 0
        self.fallbacks = 0
        self.timeouts = 0
        self.wait_s_sum = 0.0
        self.wait_count = 0
        self.flights_done = 0
        self.joiners_max = 0
        self._joiners_done_sum = 0

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event_name, value)`` on every recorded event (e.g. for Prometheus)."""
        with self._lock:
            self._listeners.append(listener)

    def record_led(self) -> None:
        """A caller started (and ran) a flight."""
        with self._lock:
            self.led += 1
        self._emit(LED, 1.0)

    def record_joined(self, wait_s: float) -> None:
        """A caller joined someone else's flight and waited ``wait_s`` for its result."""
        with self._lock:
            self.joined += 1
            self.wait_s_sum += wait_s
            self.wait_count += 1
        self._emit(JOINED, wait_s)

    def record_flight_done(self, joiners: int) -> None:
        """A flight finished after ``joiners`` other callers had joined it."""
        with self._lock:
            self.flights_done += 1
            self._joiners_done_sum += joiners
            self.joiners_max = max(self.joiners_max, joiners)
        self._emit(FLIGHT_DONE, float(joiners))

    def record_takeover(self) -> None:
        """A waiter took over a flight whose leader's lease lapsed."""
        with self._lock:
            self.takeovers += 1
        self._emit(TAKEOVER, 1.0)

    def record_fallback(self) -> None:
        """A waiter gave up at its deadline and served a fallback (stale) value."""
        with self._lock:
            self.fallbacks += 1
        self._emit(FALLBACK, 1.0)

    def record_timeout(self) -> None:
        """A waiter gave up at its deadline with nothing to serve."""
        with self._lock:
            self.timeouts += 1
        self._emit(TIMEOUT, 1.0)

    def snapshot(self) -> dict[str, float]:
        """A consistent copy of every counter, plus joiners-per-flight max and mean."""
        with self._lock:
            mean = self._joiners_done_sum / self.flights_done if self.flights_done else 0.0
            return {
                "flights_led": float(self.led),
                "joiners_total": float(self.joined),
                "joiners_per_flight_max": float(self.joiners_max),
                "joiners_per_flight_mean": mean,
                "flights_done": float(self.flights_done),
                "wait_seconds_sum": self.wait_s_sum,
                "wait_seconds_count": float(self.wait_count),
                "takeovers": float(self.takeovers),
                "fallbacks": float(self.fallbacks),
                "timeouts": float(self.timeouts),
            }

    def _emit(self, event: str, value: float) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event, value)
            except Exception:  # a broken metrics hook must never fail a flight
                log.exception("flight stats listener failed", flight_event=event)


GLOBAL_STATS = FlightStats()
