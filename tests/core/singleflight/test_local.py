"""Thread single-flight: each test is parametrized on ``enabled`` and asserts the difference."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.errors import FlightTimeout
from core.singleflight.local import SingleFlight
from core.singleflight.stats import FlightStats
from tests.core.singleflight.conftest import until

N = 10


class Counter:
    """Thread-safe count of how many times the wrapped work actually ran."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.n = 0

    def bump(self) -> int:
        with self._lock:
            self.n += 1
            return self.n


@pytest.mark.parametrize("enabled", [True, False])
def test_ten_threads_at_a_barrier_run_fn_once_and_share_its_value(enabled: bool) -> None:
    sf: SingleFlight[object] = SingleFlight(enabled=enabled, stats=FlightStats())
    runs = Counter()
    barrier = threading.Barrier(N)

    def fn() -> object:
        runs.bump()
        # hold the flight open until every caller is either running fn or waiting on it
        until(lambda: runs.n + sf.joiners("k") == N)
        return object()

    def call() -> object:
        barrier.wait()
        return sf.do("k", fn)

    with ThreadPoolExecutor(N) as pool:
        results = list(pool.map(lambda _: call(), range(N)))

    assert runs.n == (1 if enabled else N)
    assert len({id(r) for r in results}) == (1 if enabled else N)


@pytest.mark.parametrize("enabled", [True, False])
def test_leader_error_reaches_every_joiner_and_is_not_remembered(enabled: bool) -> None:
    sf: SingleFlight[str] = SingleFlight(enabled=enabled, stats=FlightStats())
    runs = Counter()
    release = threading.Event()

    def failing() -> str:
        runs.bump()
        until(lambda: runs.n + sf.joiners("k") == N)
        release.wait(5)
        raise ValueError("upstream exploded")

    def call() -> BaseException:
        with pytest.raises(ValueError, match="upstream exploded") as info:
            sf.do("k", failing)
        return info.value

    with ThreadPoolExecutor(N) as pool:
        futures = [pool.submit(call) for _ in range(N)]
        until(lambda: runs.n + sf.joiners("k") == N)
        release.set()
        errors = [f.result() for f in futures]

    assert runs.n == (1 if enabled else N)
    assert len({id(e) for e in errors}) == (1 if enabled else N)
    assert not sf.in_flight("k")
    assert sf.do("k", lambda: "fresh") == "fresh"


@pytest.mark.parametrize("enabled", [True, False])
def test_forget_starts_a_new_flight_that_later_callers_join(enabled: bool) -> None:
    sf: SingleFlight[str] = SingleFlight(enabled=enabled, stats=FlightStats())
    runs = Counter()
    started = {name: threading.Event() for name in "abc"}
    release = {name: threading.Event() for name in "abc"}

    def work(name: str) -> str:
        runs.bump()
        started[name].set()
        release[name].wait(5)
        return name

    with ThreadPoolExecutor(3) as pool:
        a = pool.submit(sf.do, "k", lambda: work("a"))
        assert started["a"].wait(5)
        sf.forget("k")
        b = pool.submit(sf.do, "k", lambda: work("b"))
        assert started["b"].wait(5)
        c = pool.submit(sf.do, "k", lambda: work("c"))
        until(lambda: runs.n + sf.joiners("k") == 3)
        release["b"].set()
        release["c"].set()
        assert b.result(5) == "b"
        assert c.result(5) == ("b" if enabled else "c")
        assert not a.done()  # A's flight is still its own, untouched by B's result
        release["a"].set()
        assert a.result(5) == "a"

    assert runs.n == (2 if enabled else 3)


@pytest.mark.parametrize("enabled", [True, False])
def test_joiner_timeout_raises_while_flight_completes_for_others(enabled: bool) -> None:
    stats = FlightStats()
    sf: SingleFlight[str] = SingleFlight(enabled=enabled, stats=stats, name="bundles")
    runs = Counter()
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        runs.bump()
        started.set()
        release.wait(5)
        return "built"

    with ThreadPoolExecutor(3) as pool:
        leader = pool.submit(sf.do, "k", slow)
        assert started.wait(5)
        patient = pool.submit(sf.do, "k", slow)
        impatient = pool.submit(sf.do, "k", slow, timeout=0.05)
        until(lambda: runs.n + sf.joiners("k") == 3)
        if enabled:
            with pytest.raises(FlightTimeout, match="timed out"):
                impatient.result(5)
            assert sf.in_flight("k")
        release.set()
        assert leader.result(5) == "built"
        assert patient.result(5) == "built"
        if not enabled:
            assert impatient.result(5) == "built"  # it ran its own copy instead of waiting

    assert runs.n == (1 if enabled else 3)
    assert stats.timeouts == (1 if enabled else 0)
