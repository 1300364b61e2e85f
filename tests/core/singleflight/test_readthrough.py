"""Stale-while-revalidate read-through over fakeredis: hits, one build, stale refresh, not-found."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import fakeredis
import pytest

from core.errors import CourseNotFound
from core.keys import Keys
from core.singleflight.distributed import DistributedFlight, FlightLease
from core.singleflight.readthrough import Cached, NegativeCache, ReadResult, ReadThrough
from core.singleflight.stats import FlightStats
from tests.core.singleflight.conftest import until

N = 10


class Store:
    """A bundle store stand-in whose builds can be held open and counted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[str, Cached[str]] = {}
        self.builds = 0
        self.release = threading.Event()
        self.release.set()
        self.missing_upstream: set[str] = set()
        self.failing = False

    def read(self, key: str) -> Cached[str] | None:
        return self.values.get(key)

    def build(self, key: str, lease: FlightLease) -> None:
        with self._lock:
            self.builds += 1
            n = self.builds
        assert self.release.wait(5)
        if key in self.missing_upstream:
            raise CourseNotFound("no such course", course_id=key)
        if self.failing:
            raise RuntimeError("oneroster unavailable")
        self.values[key] = Cached(f"v{n}", stale=False)


def make(
    fake_redis: fakeredis.FakeRedis,
    keys: Keys,
    store: Store,
    *,
    enabled: bool,
    background: ThreadPoolExecutor | None = None,
) -> ReadThrough[str]:
    flight = DistributedFlight(
        fake_redis, keys, enabled=enabled, stats=FlightStats(), recheck_s=0.05, wait_s=5.0
    )
    return ReadThrough(
        read=store.read,
        build=store.build,
        flight=flight,
        negative=NegativeCache(fake_redis, keys.missing, ttl_ms=30_000),
        background=background,
    )


def concurrently(fn: object, n: int = N) -> list[object]:
    barrier = threading.Barrier(n)

    def call(_: int) -> object:
        barrier.wait()
        try:
            return fn()  # type: ignore[operator]
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(call, range(n)))


def held_until_all_arrived(rt: ReadThrough[str], store: Store, key: str, n: int = N) -> None:
    """Hold builds until every caller is building or waiting on the one build."""
    store.release.clear()
    name = rt.flight_name(key)
    threading.Thread(
        target=lambda: (
            until(lambda: store.builds + rt.local.joiners(name) >= n),
            store.release.set(),
        ),
        daemon=True,
    ).start()


def test_fresh_value_is_a_hit_without_building(fake_redis: fakeredis.FakeRedis, keys: Keys) -> None:
    store = Store()
    store.values["c1"] = Cached("v0", stale=False)
    rt = make(fake_redis, keys, store, enabled=True)
    assert rt.get("c1") == ReadResult("v0", False, "hit")
    assert store.builds == 0


@pytest.mark.parametrize("enabled", [True, False])
def test_missing_value_is_built_once_for_concurrent_readers(
    fake_redis: fakeredis.FakeRedis, keys: Keys, enabled: bool
) -> None:
    store = Store()
    rt = make(fake_redis, keys, store, enabled=enabled)
    held_until_all_arrived(rt, store, "c1")

    results = concurrently(lambda: rt.get("c1"))

    assert store.builds == (1 if enabled else N)
    assert all(isinstance(r, ReadResult) and r.source == "built" for r in results)
    assert len({r.value for r in results if isinstance(r, ReadResult)}) == (1 if enabled else N)
    assert rt.get("c1").source == "hit"


@pytest.mark.parametrize("enabled", [True, False])
def test_stale_value_served_at_once_while_one_background_refresh_runs(
    fake_redis: fakeredis.FakeRedis, keys: Keys, enabled: bool
) -> None:
    store = Store()
    store.values["c1"] = Cached("old", stale=True)
    with ThreadPoolExecutor(N) as background:
        rt = make(fake_redis, keys, store, enabled=enabled, background=background)
        store.release.clear()  # the refresh cannot finish before every reader has returned

        results = concurrently(lambda: rt.get("c1"))

        assert results == [ReadResult("old", True, "stale")] * N
        if not enabled:
            until(lambda: store.builds == N)
        store.release.set()
    assert store.builds == (1 if enabled else N)
    assert rt.get("c1").source == "hit"


@pytest.mark.parametrize("enabled", [True, False])
def test_inline_refresh_one_caller_builds_the_others_get_stale_at_once(
    fake_redis: fakeredis.FakeRedis, keys: Keys, enabled: bool
) -> None:
    store = Store()
    store.values["c1"] = Cached("old", stale=True)
    rt = make(fake_redis, keys, store, enabled=enabled)
    store.release.clear()
    with ThreadPoolExecutor(N) as pool:
        first = pool.submit(rt.get, "c1")
        until(lambda: store.builds == 1)
        others = [pool.submit(rt.get, "c1") for _ in range(N - 1)]
        if enabled:  # answered while the refresh is still held open
            assert [f.result(5) for f in others] == [ReadResult("old", True, "stale")] * (N - 1)
        else:
            until(lambda: store.builds == N)
        store.release.set()
        assert first.result(5).source == "built"
    assert store.builds == (1 if enabled else N)


@pytest.mark.parametrize("enabled", [True, False])
def test_failed_refresh_falls_back_to_the_stale_value(
    fake_redis: fakeredis.FakeRedis, keys: Keys, enabled: bool
) -> None:
    store = Store()
    store.values["c1"] = Cached("old", stale=True)
    store.failing = True
    rt = make(fake_redis, keys, store, enabled=enabled)
    store.release.clear()
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(rt.get, "c1")
        until(lambda: store.builds == 1)
        others = [pool.submit(rt.get, "c1") for _ in range(3)]
        if not enabled:
            until(lambda: store.builds == 4)
        store.release.set()
        assert first.result(5) == ReadResult("old", True, "fallback")
        sources = {f.result(5).source for f in others}
    assert sources == ({"stale"} if enabled else {"fallback"})
    assert store.builds == (1 if enabled else 4)
    assert store.values["c1"].value == "old"


@pytest.mark.parametrize("enabled", [True, False])
def test_not_found_is_remembered_and_later_callers_do_not_build(
    fake_redis: fakeredis.FakeRedis, keys: Keys, enabled: bool
) -> None:
    store = Store()
    store.missing_upstream.add("gone")
    rt = make(fake_redis, keys, store, enabled=enabled)
    held_until_all_arrived(rt, store, "gone")

    results = concurrently(lambda: rt.get("gone"))

    assert all(isinstance(r, CourseNotFound) for r in results)
    assert store.builds == (1 if enabled else N)
    assert rt.negative.is_missing("gone")
    builds = store.builds
    with pytest.raises(CourseNotFound, match="remembered"):
        rt.get("gone")
    assert store.builds == builds
    rt.negative.clear("gone")
    store.missing_upstream.clear()
    assert rt.get("gone").source == "built"
