"""Cached state per attempt, the index that finds it again, and exact probes without SCAN."""

from __future__ import annotations

from unittest.mock import patch

import fakeredis

from core.attempts import (
    AttemptKeys,
    delete_state,
    has_state,
    latest_cached_attempt,
    load_state,
    save_state,
)
from core.attempts.state import PROBE_WINDOW
from tests.core.attempts.fakes import RESOURCE, TTL_S, USER


def test_save_state_writes_state_index_and_hwm_with_the_ttl(
    fake_redis: fakeredis.FakeRedis, attempt_keys: AttemptKeys
) -> None:
    save_state(fake_redis, attempt_keys, USER, RESOURCE, 3, '{"q": 1}', ttl_s=TTL_S)
    state_key = f"assess:state:{USER}:{RESOURCE}:3"
    assert fake_redis.get(state_key) == b'{"q": 1}'
    assert fake_redis.zrange(f"assess:attempts:{USER}:{RESOURCE}", 0, -1, withscores=True) == [
        (b"3", 3.0)
    ]
    assert fake_redis.get(f"assess:hwm:{USER}:{RESOURCE}") == b"3"
    for key in (state_key, f"assess:attempts:{USER}:{RESOURCE}", f"assess:hwm:{USER}:{RESOURCE}"):
        assert 0 < fake_redis.ttl(key) <= TTL_S


def test_state_round_trips_bytes_and_text(
    fake_redis: fakeredis.FakeRedis, attempt_keys: AttemptKeys
) -> None:
    blob = bytes(range(256))
    save_state(fake_redis, attempt_keys, USER, RESOURCE, 1, blob, ttl_s=TTL_S)
    save_state(fake_redis, attempt_keys, USER, RESOURCE, 2, "héllo", ttl_s=TTL_S)
    assert load_state(fake_redis, attempt_keys, USER, RESOURCE, 1) == blob
    assert load_state(fake_redis, attempt_keys, USER, RESOURCE, 2) == "héllo".encode()
    assert load_state(fake_redis, attempt_keys, USER, RESOURCE, 3) is None


def test_saving_an_older_attempt_keeps_the_higher_hwm(
    fake_redis: fakeredis.FakeRedis, attempt_keys: AttemptKeys
) -> None:
    save_state(fake_redis, attempt_keys, USER, RESOURCE, 5, "s", ttl_s=TTL_S)
    save_state(fake_redis, attempt_keys, USER, RESOURCE, 2, "s", ttl_s=TTL_S)
    assert fake_redis.get(f"assess:hwm:{USER}:{RESOURCE}") == b"5"


def test_delete_state_removes_state_and_index_entry(
    fake_redis: fakeredis.FakeRedis, attempt_keys: AttemptKeys
) -> None:
    save_state(fake_redis, attempt_keys, USER, RESOURCE, 2, "s", ttl_s=TTL_S)
    save_state(fake_redis, attempt_keys, USER, RESOURCE, 3, "s", ttl_s=TTL_S)
    assert delete_state(fake_redis, attempt_keys, USER, RESOURCE, 3) is True
    assert not has_state(fake_redis, attempt_keys, USER, RESOURCE, 3)
    assert has_state(fake_redis, attempt_keys, USER, RESOURCE, 2)
    assert fake_redis.zrange(f"assess:attempts:{USER}:{RESOURCE}", 0, -1) == [b"2"]
    assert delete_state(fake_redis, attempt_keys, USER, RESOURCE, 3) is False


def test_latest_is_the_highest_indexed_attempt_whose_state_still_exists(
    fake_redis: fakeredis.FakeRedis, attempt_keys: AttemptKeys
) -> None:
    for n in (1, 2, 4):
        save_state(fake_redis, attempt_keys, USER, RESOURCE, n, "s", ttl_s=TTL_S)
    fake_redis.delete(f"assess:state:{USER}:{RESOURCE}:4")  # expired or deleted behind our back
    assert latest_cached_attempt(fake_redis, attempt_keys, USER, RESOURCE) == 2
    # The dead member was pruned from the index.
    assert fake_redis.zrange(f"assess:attempts:{USER}:{RESOURCE}", 0, -1) == [b"1", b"2"]


def test_no_state_at_all_is_none(
    fake_redis: fakeredis.FakeRedis, attempt_keys: AttemptKeys
) -> None:
    fake_redis.set(f"assess:state:{USER}:{RESOURCE}.x:3", "another resource's state")
    fake_redis.set(f"assess:state:{USER}:{RESOURCE}:{PROBE_WINDOW + 1}", "past the window")
    assert latest_cached_attempt(fake_redis, attempt_keys, USER, RESOURCE) is None


def test_states_written_without_the_index_are_found_by_exact_probes(
    fake_redis: fakeredis.FakeRedis, attempt_keys: AttemptKeys
) -> None:
    # What today's web tier writes: bare state keys, no index, no hwm.
    for n in (1, 3, 12):
        fake_redis.set(f"assess:state:{USER}:{RESOURCE}:{n}", "s", ex=TTL_S)
    fake_redis.set(f"assess:state:{USER}:{RESOURCE}.extra:40", "a longer resource id's state")
    fake_redis.set(f"assess:state:{USER}2:{RESOURCE}:50", "another learner's state")
    assert latest_cached_attempt(fake_redis, attempt_keys, USER, RESOURCE) == 12


def test_probes_find_nothing_below_the_floor(
    fake_redis: fakeredis.FakeRedis, attempt_keys: AttemptKeys
) -> None:
    fake_redis.set(f"assess:state:{USER}:{RESOURCE}:2", "s")
    save_state(fake_redis, attempt_keys, USER, RESOURCE, 1, "s", ttl_s=TTL_S)
    found = latest_cached_attempt(fake_redis, attempt_keys, USER, RESOURCE, at_least=3)
    assert found is None
    assert latest_cached_attempt(fake_redis, attempt_keys, USER, RESOURCE, at_least=2) == 2


def test_an_unindexed_state_above_an_indexed_one_wins(
    fake_redis: fakeredis.FakeRedis, attempt_keys: AttemptKeys
) -> None:
    save_state(fake_redis, attempt_keys, USER, RESOURCE, 2, "s", ttl_s=TTL_S)
    fake_redis.set(f"assess:state:{USER}:{RESOURCE}:4", "s")  # web tier, without the index
    assert latest_cached_attempt(fake_redis, attempt_keys, USER, RESOURCE) == 4


def test_a_state_among_many_keys_is_found_exactly_without_scan(
    fake_redis: fakeredis.FakeRedis, attempt_keys: AttemptKeys
) -> None:
    """The production miss: 96k keys, the old SCAN gave up after its limit (1,000 keys)."""
    pipe = fake_redis.pipeline()
    for i in range(20_000):
        pipe.set(f"aaa:{i:05d}", "x")  # fakeredis scans in key order: all before the state
    pipe.execute()
    fake_redis.set(f"assess:hwm:{USER}:{RESOURCE}", "5")
    fake_redis.set(f"assess:state:{USER}:{RESOURCE}:5", "s")
    commands: list[str] = []
    real_execute = fakeredis.FakeRedis.execute_command

    def counting(self: fakeredis.FakeRedis, *args: object, **options: object) -> object:
        commands.append(str(args[0]).upper())
        return real_execute(self, *args, **options)

    with patch.object(fakeredis.FakeRedis, "execute_command", counting):
        found = latest_cached_attempt(fake_redis, attempt_keys, USER, RESOURCE, at_least=5)
    assert found == 5
    assert "SCAN" not in commands and "KEYS" not in commands
