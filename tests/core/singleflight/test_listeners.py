"""Kept pub/sub connections: reused for the next wait, never a waiter while idle, bounded."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import fakeredis

from core.keys import Keys
from core.singleflight.distributed import DistributedFlight, FlightLease
from core.singleflight.listeners import Listeners, await_subscribed, next_message
from core.singleflight.stats import FlightStats
from core.singleflight.steps import FlightKeys
from tests.core.singleflight.conftest import until


def soon(seconds: float = 2.0) -> float:
    return time.monotonic() + seconds


def subscribers(client: fakeredis.FakeRedis, channel: str) -> int:
    return int(client.pubsub_numsub(channel)[0][1])


def test_a_returned_connection_serves_the_next_channel_and_skips_the_old_ones(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    listeners = Listeners(fake_redis)
    first = listeners.subscribe("ch:1")
    assert await_subscribed(first, "ch:1", soon())
    listeners.give_back(first)

    again = listeners.subscribe("ch:2")
    assert await_subscribed(again, "ch:2", soon())
    fake_redis.publish("ch:1", b"late news for the old flight")
    fake_redis.publish("ch:2", b"ours")

    assert again is first
    assert next_message(again, "ch:2", soon()) == b"ours"
    assert subscribers(fake_redis, "ch:1") == 0


def test_an_idle_connection_is_no_flights_waiter(fake_redis: fakeredis.FakeRedis) -> None:
    listeners = Listeners(fake_redis)
    pubsub = listeners.subscribe("ch:1")
    assert await_subscribed(pubsub, "ch:1", soon())
    assert subscribers(fake_redis, "ch:1") == 1

    listeners.give_back(pubsub)

    until(lambda: subscribers(fake_redis, "ch:1") == 0)
    assert listeners.idle() == 1


def test_only_keep_connections_are_kept_and_close_drops_them(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    listeners = Listeners(fake_redis, keep=1)
    a, b = listeners.subscribe("ch:a"), listeners.subscribe("ch:b")
    listeners.give_back(a)
    listeners.give_back(b)

    assert listeners.idle() == 1
    assert b.connection is None  # closed, not kept

    listeners.close()
    assert listeners.idle() == 0
    assert a.connection is None


def test_next_message_gives_up_at_its_deadline(fake_redis: fakeredis.FakeRedis) -> None:
    listeners = Listeners(fake_redis)
    pubsub = listeners.subscribe("ch:quiet")
    assert await_subscribed(pubsub, "ch:quiet", soon())
    fake_redis.publish("ch:other", b"not ours")

    started = time.monotonic()
    assert next_message(pubsub, "ch:quiet", started + 0.1) is None
    assert time.monotonic() - started < 1.0


def test_successive_waits_of_a_flight_follower_use_one_connection(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    follower = DistributedFlight(fake_redis, keys, stats=FlightStats(), recheck_s=0.05)
    leader = DistributedFlight(fake_redis, keys, stats=FlightStats(), recheck_s=0.05)
    name = "{course:c1}:build"
    fk = FlightKeys.of(keys, name)
    seen: list[int] = []

    def build(lease: FlightLease) -> int:
        until(lambda: subscribers(fake_redis, fk.channel) >= 1)
        return lease.epoch

    for _ in range(3):
        with ThreadPoolExecutor(1) as pool:
            led = pool.submit(leader.run, name, build)
            until(lambda: fake_redis.get(fk.lease) is not None)
            followed = follower.run(name, lambda lease: -1)
            seen.append(followed.value)
            assert not followed.led and led.result().led
        assert follower._listeners.idle() == 1  # the one connection, back after each wait

    assert seen == [1, 2, 3]
    # the kept connection never counted as a waiter of the next flight on the same channel
    assert leader.stats.snapshot()["joiners_per_flight_max"] == 1
