"""Resolve, read and reset attempts: the seed's production failure and its fixes, on fakeredis."""

from __future__ import annotations

import threading
from collections.abc import Callable

import fakeredis
import pytest
from freezegun import freeze_time
from structlog.testing import capture_logs

from core.attempts import Attempt, AttemptKeys, AttemptService, save_state
from core.errors import AttemptConflict, NoActiveAttempt
from tests.core.attempts.fakes import RESOURCE, TTL_S, USER, FakeDerive, LockOnce


def make_service(
    redis: fakeredis.FakeRedis, derive: FakeDerive, *, once: LockOnce | None = None
) -> AttemptService:
    return AttemptService(redis, AttemptKeys(), derive=derive, once=once, ttl_s=TTL_S)


def start_attempt(service: AttemptService, redis: fakeredis.FakeRedis) -> Attempt:
    """What the web tier does for a new attempt: resolve, then create the state."""
    attempt = service.resolve(USER, RESOURCE)
    save_state(redis, AttemptKeys(), USER, RESOURCE, attempt.number, "{}", ttl_s=TTL_S)
    return attempt


def test_first_attempt_is_derived_from_oneroster_and_pinned(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    derive = FakeDerive([3])
    service = make_service(fake_redis, derive)
    with capture_logs() as logs:
        attempt = service.resolve(USER, RESOURCE)
    assert attempt == Attempt(number=3, source="derived", created=True)
    assert fake_redis.get(f"assess:active:{USER}:{RESOURCE}") == b"3"
    assert [e["event"] for e in logs] == ["attempt_created"]
    assert service.resolve(USER, RESOURCE) == Attempt(number=3, source="pointer")
    assert derive.calls == 1


def test_with_a_pointer_every_path_keeps_the_number_while_oneroster_flaps(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    # The production failure: OneRoster briefly answers "no results, next attempt 1".
    derive = FakeDerive([3, 1, 1, 1])
    service = make_service(fake_redis, derive)
    assert start_attempt(service, fake_redis).number == 3
    for _ in range(3):
        assert service.active(USER, RESOURCE) == Attempt(number=3, source="pointer")
        assert service.resolve(USER, RESOURCE) == Attempt(number=3, source="pointer")
    with pytest.raises(AttemptConflict):
        service.reset(USER, RESOURCE, 1)
    assert derive.calls == 1


def test_lost_pointer_with_cached_state_is_recovered_with_the_same_number(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    derive = FakeDerive([3, 1])
    service = make_service(fake_redis, derive)
    start_attempt(service, fake_redis)
    fake_redis.delete(f"assess:active:{USER}:{RESOURCE}")
    with capture_logs() as logs:
        assert service.resolve(USER, RESOURCE) == Attempt(number=3, source="recovered")
    assert logs[0]["event"] == "attempt_pointer_recovered"
    assert logs[0]["attempt"] == 3
    assert fake_redis.get(f"assess:active:{USER}:{RESOURCE}") == b"3"  # re-seeded
    assert service.active(USER, RESOURCE).source == "pointer"
    assert derive.calls == 1


def test_state_written_by_todays_web_tier_is_recovered_after_rollout(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    # Before the pointer existed: only a bare state key, no pointer, index or hwm.
    fake_redis.set(f"assess:state:{USER}:{RESOURCE}:2", "{}", ex=TTL_S)
    derive = FakeDerive([1])
    service = make_service(fake_redis, derive)
    assert service.active(USER, RESOURCE) == Attempt(number=2, source="recovered")
    assert service.resolve(USER, RESOURCE) == Attempt(number=2, source="pointer")
    assert derive.calls == 0


def test_no_pointer_and_no_state_is_no_active_attempt_then_derived(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    derive = FakeDerive([4])
    service = make_service(fake_redis, derive)
    with pytest.raises(NoActiveAttempt):
        service.active(USER, RESOURCE)
    assert derive.calls == 0  # reading never asks OneRoster
    assert service.resolve(USER, RESOURCE) == Attempt(number=4, source="derived", created=True)


def test_pointer_whose_state_is_gone_is_kept_with_a_warning(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    derive = FakeDerive([3, 1])
    service = make_service(fake_redis, derive)
    start_attempt(service, fake_redis)
    fake_redis.delete(f"assess:state:{USER}:{RESOURCE}:3")
    with capture_logs() as logs:
        assert service.resolve(USER, RESOURCE) == Attempt(number=3, source="pointer")
    assert [(e["event"], e["log_level"], e["attempt"]) for e in logs] == [
        ("attempt_pointer_stale", "warning", 3)
    ]
    assert derive.calls == 1


def test_reset_with_another_number_is_a_conflict_and_changes_nothing(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    service = make_service(fake_redis, FakeDerive([3]))
    start_attempt(service, fake_redis)
    with pytest.raises(AttemptConflict) as raised:
        service.reset(USER, RESOURCE, 2)
    assert raised.value.active == 3
    assert service.active(USER, RESOURCE).number == 3
    assert fake_redis.exists(f"assess:state:{USER}:{RESOURCE}:3")


def test_reset_with_the_active_number_clears_state_and_pointer(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    service = make_service(fake_redis, FakeDerive([3]))
    start_attempt(service, fake_redis)
    assert service.reset(USER, RESOURCE, 3) == 3
    assert not fake_redis.exists(f"assess:state:{USER}:{RESOURCE}:3")
    assert not fake_redis.exists(f"assess:active:{USER}:{RESOURCE}")
    with pytest.raises(NoActiveAttempt):
        service.active(USER, RESOURCE)


def test_reset_works_on_a_recovered_attempt(fake_redis: fakeredis.FakeRedis) -> None:
    fake_redis.set(f"assess:state:{USER}:{RESOURCE}:2", "{}")
    service = make_service(fake_redis, FakeDerive([1]))
    assert service.reset(USER, RESOURCE, 2) == 2
    assert not fake_redis.exists(f"assess:state:{USER}:{RESOURCE}:2")
    assert not fake_redis.exists(f"assess:active:{USER}:{RESOURCE}")


def test_reset_without_an_active_attempt_is_no_active_attempt(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    with pytest.raises(NoActiveAttempt):
        make_service(fake_redis, FakeDerive()).reset(USER, RESOURCE, 1)


def test_after_a_reset_the_next_attempt_is_higher_even_while_oneroster_lags(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    # OneRoster has not recorded attempt 3 yet (answers 3 again), then flaps to 1.
    derive = FakeDerive([3, 3, 1])
    service = make_service(fake_redis, derive)
    start_attempt(service, fake_redis)
    service.reset(USER, RESOURCE, 3)
    assert start_attempt(service, fake_redis) == Attempt(number=4, source="derived", created=True)
    service.reset(USER, RESOURCE, 4)
    assert service.resolve(USER, RESOURCE).number == 5


def test_an_older_stranded_state_is_not_resumed_after_a_reset(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    # The bug left a stray state under attempt 1 while attempt 3 was in progress.
    service = make_service(fake_redis, FakeDerive([3, 4]))
    start_attempt(service, fake_redis)
    fake_redis.set(f"assess:state:{USER}:{RESOURCE}:1", "{}")
    service.reset(USER, RESOURCE, 3)
    assert service.resolve(USER, RESOURCE) == Attempt(number=4, source="derived", created=True)


def test_redis_flushed_means_derived_again_as_today(fake_redis: fakeredis.FakeRedis) -> None:
    derive = FakeDerive([3, 2])
    service = make_service(fake_redis, derive)
    start_attempt(service, fake_redis)
    fake_redis.flushall()
    assert service.resolve(USER, RESOURCE) == Attempt(number=2, source="derived", created=True)
    assert derive.calls == 2


def test_reading_the_active_attempt_keeps_the_pointer_alive() -> None:
    with freeze_time("2026-03-01 12:00:00") as clock:
        redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        service = make_service(redis, FakeDerive([3]))
        service.resolve(USER, RESOURCE)  # no state saved: only the pointer keeps the number
        for _ in range(4):
            clock.tick(TTL_S - 60)
            assert service.active(USER, RESOURCE).number == 3
        clock.tick(TTL_S + 1)
        with pytest.raises(NoActiveAttempt):
            service.active(USER, RESOURCE)


def resolve_concurrently(service: AttemptService, callers: int) -> list[Attempt]:
    start = threading.Barrier(callers)
    results: list[Attempt] = []
    lock = threading.Lock()

    def call() -> None:
        start.wait(5)
        attempt = service.resolve(USER, RESOURCE)
        with lock:
            results.append(attempt)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == callers
    return results


def test_concurrent_resolves_agree_even_when_each_derivation_differs(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    derive = FakeDerive(range(1, 21), delay_s=0.05)  # every OneRoster call answers differently
    results = resolve_concurrently(make_service(fake_redis, derive), 20)
    assert len({r.number for r in results}) == 1
    assert sum(r.created for r in results) == 1


def test_concurrent_resolves_ask_oneroster_once_under_single_flight(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    derive = FakeDerive([3], delay_s=0.2)
    results = resolve_concurrently(make_service(fake_redis, derive, once=LockOnce()), 20)
    assert {r.number for r in results} == {3}
    assert sum(r.created for r in results) == 1
    assert derive.calls == 1


def test_hash_tagged_templates_work_end_to_end(fake_redis: fakeredis.FakeRedis) -> None:
    keys = AttemptKeys(
        pointer_template="assess:active:{u:{userId}:{resourceId}}",
        state_template="assess:state:{u:{userId}:{resourceId}}:{attemptNumber}",
        index_template="assess:attempts:{u:{userId}:{resourceId}}",
        hwm_template="assess:hwm:{u:{userId}:{resourceId}}",
    )
    service = AttemptService(fake_redis, keys, derive=FakeDerive([2]), ttl_s=TTL_S)
    assert service.resolve(USER, RESOURCE).number == 2
    save_state(fake_redis, keys, USER, RESOURCE, 2, "{}", ttl_s=TTL_S)
    fake_redis.delete(keys.pointer(USER, RESOURCE))
    assert service.active(USER, RESOURCE) == Attempt(number=2, source="recovered")
    assert service.reset(USER, RESOURCE, 2) == 2
    assert service.resolve(USER, RESOURCE).number == 3


class LateOnce:
    """A flight that only starts after another resolver has already claimed the attempt."""

    def __init__(self, other: AttemptService) -> None:
        self.other = other

    def run(self, name: str, fn: Callable[[], int]) -> int:
        self.other.resolve(USER, RESOURCE)
        return fn()


def test_a_flight_that_starts_after_the_claim_does_not_ask_oneroster_again(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    winner = make_service(fake_redis, FakeDerive([3]))
    late_derive = FakeDerive([1])
    late = AttemptService(
        fake_redis, AttemptKeys(), derive=late_derive, once=LateOnce(winner), ttl_s=TTL_S
    )
    assert late.resolve(USER, RESOURCE) == Attempt(number=3, source="pointer")
    assert late_derive.calls == 0
