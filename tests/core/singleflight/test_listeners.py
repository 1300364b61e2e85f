"""Kept pub/sub connections: reused for the next wait, never a waiter while idle, bounded, and
dropped when they cannot be trusted."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any, cast

import fakeredis

from core.keys import Keys
from core.singleflight.distributed import DistributedFlight, FlightLease
from core.singleflight.listeners import Listeners, _alive, await_subscribed, next_message
from core.singleflight.stats import FlightStats
from core.singleflight.steps import FlightKeys
from tests.core.singleflight.conftest import until


def soon(seconds: float = 2.0) -> float:
    return time.monotonic() + seconds


def subscribers(client: fakeredis.FakeRedis, channel: str) -> int:
    return int(client.pubsub_numsub(channel)[0][1])


class BlackHole:
    """A kept connection that a middlebox forgot: what is sent vanishes, nothing ever arrives."""

    def __init__(self) -> None:
        self.channels: dict[bytes, None] = {}
        self.connection = SimpleNamespace(can_read=lambda timeout=0: False)
        self.closed = False

    def subscribe(self, *channels: str) -> None:
        pass

    def unsubscribe(self, *channels: str) -> None:
        pass

    def get_message(self, timeout: float | None = 0.0) -> None:
        time.sleep(min(timeout or 0.0, 0.05))

    def close(self) -> None:
        self.closed = True


def test_a_returned_connection_serves_the_next_channel_without_the_old_ones_leftovers(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    listeners = Listeners(fake_redis)
    first = listeners.subscribe("ch:1")
    assert await_subscribed(first, "ch:1", soon())
    fake_redis.publish("ch:1", b"news for the old flight, never read")
    listeners.give_back(first)

    again = listeners.subscribe("ch:2")
    assert await_subscribed(again, "ch:2", soon())
    fake_redis.publish("ch:2", b"ours")

    assert again is first
    assert next_message(again, "ch:2", soon()) == b"ours"
    assert subscribers(fake_redis, "ch:1") == 0


def test_next_message_skips_other_channels_and_gives_up_at_its_deadline(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    pubsub = fake_redis.pubsub()
    pubsub.subscribe("ch:quiet", "ch:busy")
    assert await_subscribed(pubsub, "ch:busy", soon())
    fake_redis.publish("ch:busy", b"not for the quiet one")
    fake_redis.publish("ch:busy", b"nor this")

    started = time.monotonic()
    assert next_message(pubsub, "ch:quiet", started + 0.2) is None
    assert time.monotonic() - started < 1.5

    fake_redis.publish("ch:busy", b"skipped")
    fake_redis.publish("ch:quiet", b"at last")
    assert next_message(pubsub, "ch:quiet", soon()) == b"at last"
    pubsub.close()


def test_an_idle_connection_is_no_flights_waiter(fake_redis: fakeredis.FakeRedis) -> None:
    listeners = Listeners(fake_redis)
    pubsub = listeners.subscribe("ch:1")
    assert await_subscribed(pubsub, "ch:1", soon())
    assert subscribers(fake_redis, "ch:1") == 1

    listeners.give_back(pubsub)

    until(lambda: subscribers(fake_redis, "ch:1") == 0)
    assert listeners.idle() == 1


def test_only_keep_connections_are_kept_and_close_drops_them_and_later_ones(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    listeners = Listeners(fake_redis, keep=1)
    a, b, c = (listeners.subscribe(f"ch:{n}") for n in "abc")
    listeners.give_back(a)
    listeners.give_back(b)

    assert listeners.idle() == 1
    assert b.connection is None  # closed, not kept

    listeners.close()
    assert listeners.idle() == 0
    assert a.connection is None
    listeners.give_back(c)  # a wait that ended after the owner stopped
    assert listeners.idle() == 0
    assert c.connection is None


def test_a_connection_kept_too_long_is_replaced(fake_redis: fakeredis.FakeRedis) -> None:
    listeners = Listeners(fake_redis, max_idle_s=0.0)
    old = listeners.subscribe("ch:1")
    listeners.give_back(old)
    time.sleep(0.01)

    new = listeners.subscribe("ch:2")

    assert new is not old
    assert old.connection is None
    assert await_subscribed(new, "ch:2", soon())


def test_a_kept_connection_that_was_resubscribed_on_a_reconnect_is_not_trusted() -> None:
    messages = [{"type": "unsubscribe", "channel": b"ch:1", "data": 0}]
    messages.append({"type": "subscribe", "channel": b"ch:1", "data": 1})
    resubscribed = SimpleNamespace(
        get_message=lambda timeout=0.0: messages.pop(0) if messages else None,
        connection=SimpleNamespace(can_read=lambda timeout=0: False),
    )
    assert not _alive(cast(Any, resubscribed))


def test_a_follower_on_a_silently_dead_kept_connection_moves_to_a_fresh_one(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    follower = DistributedFlight(
        fake_redis, keys, stats=FlightStats(), recheck_s=0.05, wait_s=5.0, confirm_s=0.2
    )
    hole = BlackHole()
    follower._listeners.give_back(cast(Any, hole))
    name = "{course:c1}:build"
    fk = FlightKeys.of(keys, name)

    def build(lease: FlightLease) -> int:
        until(lambda: subscribers(fake_redis, fk.channel) == 1)  # the follower's fresh one
        return 7

    leader = DistributedFlight(fake_redis, keys, stats=FlightStats())
    with ThreadPoolExecutor(1) as pool:
        led = pool.submit(leader.run, name, build)
        until(lambda: fake_redis.get(fk.lease) is not None)
        started = time.monotonic()
        followed = follower.run(name, lambda lease: -1)
        waited = time.monotonic() - started

    assert (followed.value, followed.led, led.result().led) == (7, False, True)
    assert waited < 3.0  # the confirm window (0.2 s), not the whole wait (5 s)
    assert hole.closed
    assert follower._listeners.idle() == 1  # the fresh connection, kept instead


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

    assert seen == [seen[0], seen[0] + 1, seen[0] + 2]  # three successive epochs
    # the kept connection never counted as a waiter of the next flight on the same channel
    assert leader.stats.snapshot()["joiners_per_flight_max"] == 1
