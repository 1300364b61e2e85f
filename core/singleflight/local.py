"""In-process single-flight for threads: one call per key runs, concurrent callers share it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

from core.errors import FlightTimeout
from core.singleflight.stats import GLOBAL_STATS, FlightStats

T = TypeVar("T")


class _Call(Generic[T]):
    """One flight: its completion event, its outcome and how many callers joined it."""

    __slots__ = ("done", "error", "joiners", "tb", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None
        self.tb: TracebackType | None = None
        self.joiners = 0


class SingleFlight(Generic[T]):
    """Coalesces concurrent calls per key; results are never cached past the flight."""

    def __init__(
        self, *, enabled: bool = True, stats: FlightStats | None = None, name: str = ""
    ) -> None:
        self.enabled = enabled
        self.name = name
        self.stats = stats if stats is not None else GLOBAL_STATS
        self._lock = threading.Lock()
        self._calls: dict[str, _Call[T]] = {}

    def do(self, key: str, fn: Callable[[], T], *, timeout: float | None = None) -> T:
        """Run ``fn`` once for all concurrent callers of ``key``; return (or raise) its outcome.

        The first caller runs ``fn`` in its own thread. Joiners wait at most ``timeout``
        seconds (then ``FlightTimeout``); the flight itself is never cancelled.
        """
        if not self.enabled:
            self.stats.record_led()
            return fn()
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = _Call()
                self._calls[key] = call
            else:
                call.joiners += 1
        if leader:
            return self._lead(key, call, fn)
        return self._join(key, call, timeout)

    def forget(self, key: str) -> None:
        """Detach the current flight: the next caller starts a new one; joiners keep the old."""
        with self._lock:
            self._calls.pop(key, None)

    def in_flight(self, key: str) -> bool:
        """Whether a flight for ``key`` is running (and would be joined)."""
        with self._lock:
            return key in self._calls

    def joiners(self, key: str) -> int:
        """How many callers joined the current flight of ``key`` (0 if none; timed-out ones too)."""
        with self._lock:
            call = self._calls.get(key)
            return call.joiners if call is not None else 0

    def _lead(self, key: str, call: _Call[T], fn: Callable[[], T]) -> T:
        self.stats.record_led()
        try:
            call.value = fn()
        except BaseException as exc:
            call.error, call.tb = exc, exc.__traceback__
            raise
        finally:
            with self._lock:
                if self._calls.get(key) is call:
                    del self._calls[key]
                joiners = call.joiners
            call.done.set()
            self.stats.record_flight_done(joiners)
        return call.value

    def _join(self, key: str, call: _Call[T], timeout: float | None) -> T:
        started = time.monotonic()
        if not call.done.wait(timeout):
            self.stats.record_timeout()
            raise FlightTimeout(
                "single-flight wait timed out; the flight continues",
                flight=self.name,
                key=key,
                timeout_s=timeout,
            )
        self.stats.record_joined(time.monotonic() - started)
        if call.error is not None:
            raise call.error.with_traceback(call.tb)
        return call.value  # type: ignore[return-value]  # set whenever error is None
