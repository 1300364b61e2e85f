"""Cross-process flight on fakeredis: coalescing, failure, takeover, deadlines, heartbeat."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import fakeredis
import pytest

from core.errors import ConfigError, FlightFailed, FlightTimeout
from core.keys import Keys
from core.singleflight.distributed import DistributedFlight, FlightLease
from core.singleflight.outcome import decode_outcome, encode_outcome
from core.singleflight.stats import FlightStats
from core.singleflight.steps import FlightKeys, FlightScripts
from tests.core.singleflight.conftest import until

N = 8


@pytest.fixture
def fk(keys: Keys) -> FlightKeys:
    return FlightKeys.of(keys, "{course:c1}:build")


def make_flight(
    fake_redis: fakeredis.FakeRedis, keys: Keys, *, enabled: bool = True, **kw: float
) -> DistributedFlight:
    opts: dict[str, float] = {"lease_ms": 2000, "heartbeat_ms": 200, "recheck_s": 0.05, **kw}
    return DistributedFlight(
        fake_redis,
        keys,
        enabled=enabled,
        stats=FlightStats(),
        lease_ms=int(opts["lease_ms"]),
        heartbeat_ms=int(opts["heartbeat_ms"]),
        recheck_s=opts["recheck_s"],
        wait_s=opts.get("wait_s", 5.0),
    )


class Runs:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.n = 0

    def bump(self) -> None:
        with self._lock:
            self.n += 1


@pytest.mark.parametrize("enabled", [True, False])
def test_concurrent_callers_run_fn_once_and_share_the_value(
    fake_redis: fakeredis.FakeRedis, keys: Keys, fk: FlightKeys, enabled: bool
) -> None:
    flight = make_flight(fake_redis, keys, enabled=enabled)
    runs = Runs()
    barrier = threading.Barrier(N)

    def build(lease: FlightLease) -> dict[str, int]:
        runs.bump()
        until(lambda: runs.n + fake_redis.pubsub_numsub(fk.channel)[0][1] == N)
        return {"generation": 7, "epoch": lease.epoch}

    def call(_: int) -> tuple[dict[str, int], bool]:
        barrier.wait()
        out = flight.run("{course:c1}:build", build)
        return out.value, out.led

    with ThreadPoolExecutor(N) as pool:
        results = list(pool.map(call, range(N)))

    assert runs.n == (1 if enabled else N)
    assert sum(led for _, led in results) == (1 if enabled else N)
    assert {v["generation"] for v, _ in results} == {7}
    if enabled:
        assert flight.stats.snapshot()["joiners_total"] == N - 1
        assert fake_redis.get(fk.lease) is None  # released on finish


@pytest.mark.parametrize("enabled", [True, False])
def test_leader_error_reaches_followers_as_flight_failed_and_is_not_reused(
    fake_redis: fakeredis.FakeRedis, keys: Keys, fk: FlightKeys, enabled: bool
) -> None:
    flight = make_flight(fake_redis, keys, enabled=enabled)
    runs = Runs()

    def build(lease: FlightLease) -> int:
        runs.bump()
        until(lambda: runs.n + fake_redis.pubsub_numsub(fk.channel)[0][1] == 4)
        raise LookupError("oneroster said 503")

    def call(_: int) -> BaseException:
        try:
            flight.run("{course:c1}:build", build)
        except (LookupError, FlightFailed) as exc:
            return exc
        raise AssertionError("no error")

    with ThreadPoolExecutor(4) as pool:
        errors = list(pool.map(call, range(4)))

    failed = [e for e in errors if isinstance(e, FlightFailed)]
    assert len(failed) == (3 if enabled else 0)
    assert all("oneroster said 503" in str(e) and "LookupError" in str(e) for e in failed)
    assert runs.n == (1 if enabled else 4)
    assert flight.run("{course:c1}:build", lambda lease: 5).value == 5


@pytest.mark.parametrize("enabled", [True, False])
def test_lapsed_leader_is_taken_over_once_and_its_late_write_fenced(
    fake_redis: fakeredis.FakeRedis, keys: Keys, fk: FlightKeys, enabled: bool
) -> None:
    scripts = FlightScripts(fake_redis)
    _, dead_epoch = scripts.acquire(fk, "dead", 150)  # a leader that will never finish
    flight = make_flight(fake_redis, keys, enabled=enabled)
    runs = Runs()

    def build(lease: FlightLease) -> str:
        runs.bump()
        return f"built-by-{lease.epoch}"

    with ThreadPoolExecutor(3) as pool:
        outs = list(pool.map(lambda _: flight.run("{course:c1}:build", build), range(3)))

    assert runs.n == (1 if enabled else 3)
    assert flight.stats.takeovers == (1 if enabled else 0)
    if enabled:
        assert {o.value for o in outs} == {f"built-by-{dead_epoch + 1}"}
        late = scripts.finish(fk, dead_epoch, encode_outcome(dead_epoch, value="x"), "dead", 10_000)
        assert late is None
        stored = decode_outcome(fake_redis.get(fk.outcome))
        assert stored is not None and stored.value == f"built-by-{dead_epoch + 1}"


@pytest.mark.parametrize("enabled", [True, False])
def test_waiter_past_its_deadline_falls_back_or_times_out(
    fake_redis: fakeredis.FakeRedis, keys: Keys, fk: FlightKeys, enabled: bool
) -> None:
    flight = make_flight(fake_redis, keys, enabled=enabled, lease_ms=300, heartbeat_ms=50)
    started, release = threading.Event(), threading.Event()
    runs = Runs()

    def stuck(lease: FlightLease) -> str:
        runs.bump()
        started.set()
        release.wait(5 if lease.epoch else 0)  # only the real leader is stuck
        return "new"

    with ThreadPoolExecutor(1) as pool:
        leader = pool.submit(flight.run, "{course:c1}:build", stuck)
        assert started.wait(5)
        with_stale = flight.run("{course:c1}:build", stuck, wait_s=0.5, fallback=lambda: "old")
        if enabled:
            assert (with_stale.value, with_stale.fell_back) == ("old", True)
            with pytest.raises(FlightTimeout, match="deadline"):
                flight.run("{course:c1}:build", stuck, wait_s=0.2, fallback=lambda: None)
            assert fake_redis.get(fk.lease) is not None  # heartbeats kept the stuck lease
        else:
            assert (with_stale.value, with_stale.fell_back) == ("new", False)
        release.set()
        assert leader.result(5).value == "new"

    assert runs.n == (1 if enabled else 2)
    assert flight.stats.fallbacks == (1 if enabled else 0)
    assert flight.stats.timeouts == (1 if enabled else 0)


def test_still_owner_turns_false_when_the_lease_is_taken(
    fake_redis: fakeredis.FakeRedis, keys: Keys, fk: FlightKeys
) -> None:
    flight = make_flight(fake_redis, keys)
    seen: list[bool] = []

    def build(lease: FlightLease) -> str:
        seen.append(lease.still_owner())
        fake_redis.set(fk.lease, b"someone-else")
        seen.append(lease.still_owner())
        return "done"

    flight.run("{course:c1}:build", build)
    assert seen == [True, False]
    assert fake_redis.get(fk.lease) == b"someone-else"  # not released: it is not ours


def test_heartbeat_keeps_a_long_flight_leased(
    fake_redis: fakeredis.FakeRedis, keys: Keys, fk: FlightKeys
) -> None:
    flight = make_flight(fake_redis, keys, lease_ms=300, heartbeat_ms=50)

    def long_build(lease: FlightLease) -> bool:
        time.sleep(0.6)  # twice the lease
        return lease.still_owner()

    assert flight.run("{course:c1}:build", long_build).value is True


def test_unserialisable_value_fails_leader_and_followers_alike(
    fake_redis: fakeredis.FakeRedis, keys: Keys, fk: FlightKeys
) -> None:
    flight = make_flight(fake_redis, keys)
    with pytest.raises(TypeError):
        flight.run("{course:c1}:build", lambda lease: object())
    stored = decode_outcome(fake_redis.get(fk.outcome))
    assert stored is not None and not stored.ok and "not JSON serializable" in stored.error


def test_a_heartbeat_not_shorter_than_the_lease_is_refused(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    with pytest.raises(ConfigError, match="heartbeat"):
        DistributedFlight(fake_redis, keys, lease_ms=1000, heartbeat_ms=1000)
