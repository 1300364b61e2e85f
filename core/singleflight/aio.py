"""In-process single-flight for asyncio: the flight is its own task, immune to callers' cancels."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from core.errors import FlightTimeout
from core.singleflight.stats import GLOBAL_STATS, FlightStats

T = TypeVar("T")


class _Flight(Generic[T]):
    __slots__ = ("joiners", "task")

    def __init__(self, task: asyncio.Task[T]) -> None:
        self.task = task
        self.joiners = 0


class AsyncSingleFlight(Generic[T]):
    """Coalesces concurrent awaits per key within one event loop; nothing is cached."""

    def __init__(
        self, *, enabled: bool = True, stats: FlightStats | None = None, name: str = ""
    ) -> None:
        self.enabled = enabled
        self.name = name
        self.stats = stats if stats is not None else GLOBAL_STATS
        self._flights: dict[str, _Flight[T]] = {}

    async def do(
        self, key: str, fn: Callable[[], Awaitable[T]], *, timeout: float | None = None
    ) -> T:
        """Await the one flight of ``key`` (starting it if none), for at most ``timeout`` seconds.

        Cancelling or timing out any caller, the starter included, leaves the flight running
        for the others; a timeout raises ``FlightTimeout``.
        """
        if not self.enabled:
            self.stats.record_led()
            return await fn()
        flight = self._flights.get(key)
        if flight is not None and flight.task.get_loop() is not asyncio.get_running_loop():
            flight = None  # left by a loop that is gone (or another thread's): not joinable
        leader = flight is None
        if flight is None:
            self.stats.record_led()
            flight = _Flight(asyncio.ensure_future(self._run(fn)))
            self._flights[key] = flight
            flight.task.add_done_callback(self._on_done(key, flight))
        else:
            flight.joiners += 1
        started = time.monotonic()
        # asyncio.wait never cancels what it waits on: a cancelled caller leaves the flight alone.
        done, _ = await asyncio.wait({flight.task}, timeout=timeout)
        if not done:
            self.stats.record_timeout()
            raise FlightTimeout(
                "single-flight wait timed out; the flight continues",
                flight=self.name,
                key=key,
                timeout_s=timeout,
            )
        if not leader:
            self.stats.record_joined(time.monotonic() - started)
        return flight.task.result()

    def forget(self, key: str) -> None:
        """Detach the current flight: the next caller starts a new one; joiners keep the old."""
        self._flights.pop(key, None)

    def in_flight(self, key: str) -> bool:
        """Whether a flight for ``key`` is running (and would be joined)."""
        return key in self._flights

    def joiners(self, key: str) -> int:
        """How many callers joined the current flight of ``key`` (0 if none)."""
        flight = self._flights.get(key)
        return flight.joiners if flight is not None else 0

    async def _run(self, fn: Callable[[], Awaitable[T]]) -> T:
        return await fn()

    def _on_done(self, key: str, flight: _Flight[T]) -> Callable[[asyncio.Task[T]], None]:
        def done(task: asyncio.Task[T]) -> None:
            if self._flights.get(key) is flight:
                del self._flights[key]
            if not task.cancelled():
                task.exception()  # retrieved: no "never retrieved" warning if every caller left
            self.stats.record_flight_done(flight.joiners)

        return done
