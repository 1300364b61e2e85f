"""The flight's atomic Redis steps on fakeredis: lease, epoch, extend, release, fenced finish."""

from __future__ import annotations

import fakeredis
import orjson
import pytest

from core.keys import Keys
from core.singleflight.outcome import decode_outcome, encode_outcome
from core.singleflight.steps import FlightKeys, FlightScripts


@pytest.fixture
def fk(keys: Keys) -> FlightKeys:
    return FlightKeys.of(keys, "{course:c1}:build")


@pytest.fixture
def scripts(fake_redis: fakeredis.FakeRedis) -> FlightScripts:
    return FlightScripts(fake_redis)


def test_acquire_takes_a_free_lease_and_bumps_the_epoch(
    scripts: FlightScripts, fk: FlightKeys
) -> None:
    got, first = scripts.acquire(fk, "a", 1000)
    assert got
    assert scripts.acquire(fk, "b", 1000) == (False, first)
    assert scripts.release(fk, "a")
    assert scripts.acquire(fk, "b", 1000) == (True, first + 1)


def test_the_epoch_key_expires_soon_after_the_flight_and_never_repeats(
    fake_redis: fakeredis.FakeRedis, scripts: FlightScripts, fk: FlightKeys
) -> None:
    _, first = scripts.acquire(fk, "a", 1000)
    assert 0 < fake_redis.pttl(fk.epoch) <= 2000  # a couple of leases, not a day
    assert scripts.extend(fk, "a", 30_000)
    assert fake_redis.pttl(fk.epoch) > 30_000  # a long build keeps its epoch with its lease
    scripts.release(fk, "a")
    fake_redis.delete(fk.epoch)  # what its expiry does
    _, restarted = scripts.acquire(fk, "b", 1000)
    assert restarted > first  # a revived old leader can never match the restarted count


def test_release_deletes_only_the_owners_lease(
    fake_redis: fakeredis.FakeRedis, scripts: FlightScripts, fk: FlightKeys
) -> None:
    scripts.acquire(fk, "owner", 1000)
    assert not scripts.release(fk, "intruder")
    assert fake_redis.get(fk.lease) == b"owner"
    assert scripts.release(fk, "owner")
    assert fake_redis.get(fk.lease) is None


def test_extend_pushes_expiry_only_for_the_owner(
    fake_redis: fakeredis.FakeRedis, scripts: FlightScripts, fk: FlightKeys
) -> None:
    scripts.acquire(fk, "owner", 1000)
    assert not scripts.extend(fk, "intruder", 60_000)
    assert fake_redis.pttl(fk.lease) <= 1000
    assert scripts.extend(fk, "owner", 60_000)
    assert fake_redis.pttl(fk.lease) > 1000
    fake_redis.delete(fk.lease)
    assert not scripts.extend(fk, "owner", 60_000)
    assert fake_redis.get(fk.lease) is None  # a lapsed lease is not resurrected


def test_finish_from_a_superseded_epoch_is_fenced_off(
    fake_redis: fakeredis.FakeRedis, scripts: FlightScripts, fk: FlightKeys
) -> None:
    _, old = scripts.acquire(fk, "dead-leader", 1000)
    fake_redis.delete(fk.lease)  # its lease lapsed
    _, new = scripts.acquire(fk, "successor", 1000)
    listener = fake_redis.pubsub()
    listener.subscribe(fk.channel)
    listener.get_message(timeout=1)

    late = scripts.finish(fk, old, encode_outcome(old, value="late"), "dead-leader", 10_000)
    assert late is None
    assert fake_redis.get(fk.outcome) is None
    assert fake_redis.get(fk.lease) == b"successor"
    assert listener.get_message(timeout=0.05) is None

    assert scripts.finish(fk, new, encode_outcome(new, value="fresh"), "successor", 10_000) == 1
    stored = decode_outcome(fake_redis.get(fk.outcome))
    assert stored is not None and (stored.epoch, stored.value) == (new, "fresh")
    assert fake_redis.get(fk.lease) is None
    msg = listener.get_message(timeout=1)
    assert msg is not None and orjson.loads(msg["data"])["value"] == "fresh"
    listener.close()
