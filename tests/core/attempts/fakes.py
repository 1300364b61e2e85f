"""Test doubles for attempt tests: a fake OneRoster derivation and a one-process single-flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

TTL_S = 600
USER = "learner-1"
RESOURCE = "quiz-fractions.1"


class FakeDerive:
    """Stands in for OneRoster: counts calls and answers the configured numbers in turn."""

    def __init__(self, answers: Iterable[int] = (1,), *, delay_s: float = 0.0) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.delay_s = delay_s
        self._lock = threading.Lock()

    def __call__(self, user_id: str, resource_id: str) -> int:
        with self._lock:
            self.calls += 1
            index = min(self.calls, len(self.answers)) - 1
        time.sleep(self.delay_s)  # widens the window in which concurrent callers overlap
        return self.answers[index]


class LockOnce:
    """One-process single-flight: the first caller of a name runs ``fn``, the rest wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, tuple[threading.Event, list[int]]] = {}

    def run(self, name: str, fn: Callable[[], int]) -> int:
        with self._lock:
            flight = self._flights.get(name)
            leader = flight is None
            if flight is None:
                flight = self._flights[name] = (threading.Event(), [])
        done, result = flight
        if leader:
            try:
                result.append(fn())
            finally:
                with self._lock:
                    del self._flights[name]
                done.set()
        done.wait(5)
        return result[0]
