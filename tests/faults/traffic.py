"""Background traffic during a fault: a stream of upstream changes with their events, and readers.

Both run in threads of the test process and keep a log of what their clients saw (status codes,
errors, stale flags, times), which the scenarios turn into figures.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.faults.oracle import Mutator

Publish = Callable[[dict[str, Any]], None]


@dataclass
class MutationStream:
    """Changes upstream data and publishes the matching event, every ``interval_s``.

    A publish that fails is retried (as a producer would, after a 503) until it goes through or
    the stream stops; ``gave_up`` counts events that never went through.
    """

    mutator: Mutator
    publish: Publish
    interval_s: float = 0.15
    retry_s: float = 0.2
    published: int = 0
    publish_errors: int = 0
    gave_up: int = 0
    last_publish_at: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    sent: list[tuple[float, str]] = field(default_factory=list)  # (when, event id) accepted
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mutations", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            event = self.mutator.mutate()
            while True:
                try:
                    self.publish(event)
                    self.published += 1
                    self.last_publish_at = time.monotonic()
                    self.sent.append((self.last_publish_at, event["id"]))
                    break
                except Exception as exc:
                    self.publish_errors += 1
                    self.errors[type(exc).__name__] += 1
                    if self._stop.wait(self.retry_s):
                        self.gave_up += 1
                        return
            self._stop.wait(self.interval_s)


@dataclass(frozen=True, slots=True)
class Answer:
    """What one read saw."""

    at: float
    path: str
    status: int  # 0: no answer at all (connection refused, timeout)
    stale: bool
    generation: int | None
    built_at: str | None = None


@dataclass
class Readers:
    """``threads`` clients reading random paths from the API in a loop."""

    base_url: str
    token: str
    paths: Sequence[str]
    threads: int = 3
    pause_s: float = 0.01
    answers: list[Answer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, args=(n,), name=f"reader-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=10) as client:
            while not self._stop.is_set():
                path = rng.choice(self.paths)
                try:
                    resp = client.get(path)
                    gen = resp.headers.get("x-bundle-generation")
                    answer = Answer(
                        time.monotonic(),
                        path,
                        resp.status_code,
                        resp.headers.get("x-bundle-stale") == "true",
                        int(gen) if gen is not None else None,
                        resp.headers.get("x-bundle-built-at"),
                    )
                except httpx.HTTPError:
                    answer = Answer(time.monotonic(), path, 0, False, None)
                with self._lock:
                    self.answers.append(answer)
                self._stop.wait(self.pause_s)

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)


def statuses(answers: Sequence[Answer]) -> Counter[int]:
    return Counter(a.status for a in answers)


def errors_of(answers: Sequence[Answer]) -> list[Answer]:
    """Answers a client would count as errors: 5xx or no answer."""
    return [a for a in answers if a.status == 0 or a.status >= 500]
