"""The pointer: reads refresh its TTL, writes keep the high-water mark, clear compares first."""

from __future__ import annotations

import fakeredis
import pytest
from freezegun import freeze_time

from core.attempts import AttemptKeys, AttemptPointers
from tests.core.attempts.fakes import RESOURCE, TTL_S, USER


@pytest.fixture
def pointers(fake_redis: fakeredis.FakeRedis, attempt_keys: AttemptKeys) -> AttemptPointers:
    return AttemptPointers(fake_redis, attempt_keys, ttl_s=TTL_S)


def test_missing_pointer_reads_as_none(pointers: AttemptPointers) -> None:
    assert pointers.get(USER, RESOURCE) is None


def test_set_then_get_answers_the_number_under_the_web_tiers_key(
    pointers: AttemptPointers, fake_redis: fakeredis.FakeRedis
) -> None:
    pointers.set(USER, RESOURCE, 3)
    assert pointers.get(USER, RESOURCE) == 3
    assert fake_redis.get(f"assess:active:{USER}:{RESOURCE}") == b"3"
    assert 0 < fake_redis.ttl(f"assess:active:{USER}:{RESOURCE}") <= TTL_S


def test_reading_the_pointer_refreshes_its_ttl() -> None:
    with freeze_time("2026-03-01 12:00:00") as clock:
        redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        pointers = AttemptPointers(redis, AttemptKeys(), ttl_s=TTL_S)
        pointers.set(USER, RESOURCE, 2)
        for _ in range(5):  # 5 reads, each before the TTL runs out: 2.5 TTLs in all
            clock.tick(TTL_S // 2)
            assert pointers.get(USER, RESOURCE) == 2
        clock.tick(TTL_S + 1)  # unread for longer than the TTL
        assert pointers.get(USER, RESOURCE) is None


def test_clear_if_leaves_a_pointer_at_another_number(pointers: AttemptPointers) -> None:
    pointers.set(USER, RESOURCE, 4)
    assert pointers.clear_if(USER, RESOURCE, 3) is False
    assert pointers.get(USER, RESOURCE) == 4
    assert pointers.clear_if(USER, RESOURCE, 4) is True
    assert pointers.get(USER, RESOURCE) is None
    assert pointers.clear_if(USER, RESOURCE, 4) is False


def test_cleared_number_stays_under_the_high_water_mark(
    pointers: AttemptPointers, fake_redis: fakeredis.FakeRedis
) -> None:
    # A pointer written by the web tier directly, without the hwm.
    fake_redis.set(f"assess:active:{USER}:{RESOURCE}", "7")
    assert pointers.high_water_mark(USER, RESOURCE) == 0
    assert pointers.clear_if(USER, RESOURCE, 7)
    assert pointers.high_water_mark(USER, RESOURCE) == 7
    assert 0 < fake_redis.ttl(f"assess:hwm:{USER}:{RESOURCE}") <= TTL_S


def test_claim_nx_keeps_an_existing_pointer(pointers: AttemptPointers) -> None:
    first = pointers.claim(USER, RESOURCE, 3, mode="nx")
    second = pointers.claim(USER, RESOURCE, 1, mode="nx")
    assert (first.number, first.written) == (3, True)
    assert (second.number, second.written) == (3, False)
    assert pointers.get(USER, RESOURCE) == 3


def test_claim_next_numbers_above_every_attempt_handed_out(pointers: AttemptPointers) -> None:
    pointers.set(USER, RESOURCE, 5)
    assert pointers.clear_if(USER, RESOURCE, 5)
    claim = pointers.claim(USER, RESOURCE, 2, mode="next")  # OneRoster lags: says 2
    assert (claim.number, claim.written) == (6, True)
    assert pointers.high_water_mark(USER, RESOURCE) == 6
    assert pointers.clear_if(USER, RESOURCE, 6)
    assert pointers.claim(USER, RESOURCE, 9, mode="next").number == 9  # upstream ahead: kept


def test_set_never_lowers_the_high_water_mark(pointers: AttemptPointers) -> None:
    pointers.set(USER, RESOURCE, 8)
    pointers.set(USER, RESOURCE, 2)
    assert pointers.get(USER, RESOURCE) == 2
    assert pointers.high_water_mark(USER, RESOURCE) == 8


@pytest.mark.parametrize("garbage", [b"", b"abc", b"0", b"-2", b"2.5"])
def test_a_pointer_that_is_not_an_attempt_number_counts_as_absent(
    pointers: AttemptPointers, fake_redis: fakeredis.FakeRedis, garbage: bytes
) -> None:
    fake_redis.set(f"assess:active:{USER}:{RESOURCE}", garbage)
    assert pointers.get(USER, RESOURCE) is None
    assert pointers.claim(USER, RESOURCE, 3, mode="nx").written
    assert pointers.get(USER, RESOURCE) == 3


def test_pointers_work_on_a_client_that_decodes_responses(attempt_keys: AttemptKeys) -> None:
    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    pointers = AttemptPointers(redis, attempt_keys, ttl_s=TTL_S)
    pointers.set(USER, RESOURCE, 11)
    assert pointers.get(USER, RESOURCE) == 11
    assert pointers.high_water_mark(USER, RESOURCE) == 11


def test_a_ttl_below_one_second_is_refused(
    fake_redis: fakeredis.FakeRedis, attempt_keys: AttemptKeys
) -> None:
    with pytest.raises(ValueError, match="TTL"):
        AttemptPointers(fake_redis, attempt_keys, ttl_s=0)
