"""Flight counters as the metrics layer sees them, fed by real flights."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.singleflight.local import SingleFlight
from core.singleflight.stats import FlightStats
from tests.core.singleflight.conftest import until


@pytest.mark.parametrize("enabled", [True, False])
def test_snapshot_counts_leaders_joiners_and_joiners_per_flight(enabled: bool) -> None:
    stats = FlightStats()
    events: list[tuple[str, float]] = []
    stats.add_listener(lambda name, value: events.append((name, value)))
    sf: SingleFlight[int] = SingleFlight(enabled=enabled, stats=stats)
    release = threading.Event()
    started = threading.Semaphore(0)

    def fn() -> int:
        started.release()
        release.wait(5)
        return 7

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(sf.do, "k", fn)]
        assert started.acquire(timeout=5)
        futures += [pool.submit(sf.do, "k", fn) for _ in range(3)]
        until(lambda: sf.joiners("k") == 3 or stats.led == 4)
        release.set()
        assert [f.result(5) for f in futures] == [7] * 4
    sf.do("k", lambda: 8)  # a second, unjoined flight

    snap = stats.snapshot()
    if enabled:
        assert snap["flights_led"] == 2
        assert snap["joiners_total"] == 3
        assert snap["joiners_per_flight_max"] == 3
        assert snap["joiners_per_flight_mean"] == 1.5
        assert snap["wait_seconds_count"] == 3
        assert [n for n, _ in events].count("joined") == 3
    else:
        assert snap["flights_led"] == 5
        assert snap["joiners_total"] == 0
    assert snap["timeouts"] == 0


def test_a_failing_listener_never_breaks_a_flight() -> None:
    stats = FlightStats()

    def broken(name: str, value: float) -> None:
        raise RuntimeError("prometheus down")

    stats.add_listener(broken)
    sf: SingleFlight[int] = SingleFlight(stats=stats)
    assert sf.do("k", lambda: 1) == 1
    stats.record_takeover()
    stats.record_fallback()
    stats.record_timeout()
    snap = stats.snapshot()
    assert (snap["flights_led"], snap["takeovers"], snap["fallbacks"], snap["timeouts"]) == (
        1,
        1,
        1,
        1,
    )
