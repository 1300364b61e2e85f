"""Cached assessment state per attempt, and the index that lets a lost pointer be recovered.

The web tier owns the state's content; this module only writes it for Python callers, always
together with the index (sorted set, member = score = attempt number) and the high-water mark.
State keys written without the index (older web-tier code) are found by exact ``EXISTS`` probes
of the attempt numbers from the high-water mark up: attempt numbers are small integers.
"""

from __future__ import annotations

from importlib import resources
from typing import cast

from redis import Redis

from core.attempts.keys import AttemptKeys, check_attempt
from core.attempts.pointers import as_attempt

_SAVE = resources.files(__package__).joinpath("state_save.lua").read_text()

INDEX_CHECK_LIMIT = 100  # newest index members checked for a live state key
# Attempt numbers probed from the floor up for state keys written without the index; a learner
# makes a handful of attempts per resource, and the hwm keeps the floor at the current one.
PROBE_WINDOW = 100


def save_state(  # noqa: PLR0917 - positional order is the published API
    redis: Redis,
    keys: AttemptKeys,
    user_id: str,
    resource_id: str,
    attempt: int,
    state: bytes | str,
    *,
    ttl_s: int,
) -> None:
    """Store one attempt's state with a TTL, index it and raise the hwm, atomically."""
    script = redis.register_script(_SAVE)
    script(
        keys=[
            keys.state(user_id, resource_id, attempt),
            keys.index(user_id, resource_id),
            keys.hwm(user_id, resource_id),
        ],
        args=[state, check_attempt(attempt), ttl_s],
    )


def delete_state(
    redis: Redis, keys: AttemptKeys, user_id: str, resource_id: str, attempt: int
) -> bool:
    """Delete one attempt's state and its index entry; True when the state existed."""
    pipe = redis.pipeline(transaction=True)
    pipe.delete(keys.state(user_id, resource_id, attempt))
    pipe.zrem(keys.index(user_id, resource_id), str(attempt))
    deleted, _ = pipe.execute()
    return bool(deleted)


def has_state(
    redis: Redis, keys: AttemptKeys, user_id: str, resource_id: str, attempt: int
) -> bool:
    """Whether one attempt's state is cached."""
    return bool(redis.exists(keys.state(user_id, resource_id, attempt)))


def load_state(
    redis: Redis, keys: AttemptKeys, user_id: str, resource_id: str, attempt: int
) -> bytes | None:
    """One attempt's cached state, or None."""
    raw = redis.get(keys.state(user_id, resource_id, attempt))
    if raw is None:
        return None
    return raw if isinstance(raw, bytes) else str(raw).encode()


def latest_cached_attempt(
    redis: Redis,
    keys: AttemptKeys,
    user_id: str,
    resource_id: str,
    *,
    at_least: int = 1,
) -> int | None:
    """The highest attempt number ``>= at_least`` whose state is cached, or None.

    Exact, and without SCAN: the index names the attempts saved through it (members whose state
    is gone are pruned on the way), and one pipeline of ``EXISTS`` probes covers the state keys
    written without it, attempts ``at_least`` to ``at_least + PROBE_WINDOW - 1``. Every key
    named is one of this learner's and resource's, so a cluster hash tag keeps them in one slot.
    """
    at_least = check_attempt(at_least)
    found = [
        number
        for number in (
            _from_index(redis, keys, user_id, resource_id, at_least),
            _from_probes(redis, keys, user_id, resource_id, at_least),
        )
        if number is not None
    ]
    return max(found, default=None)


def _from_index(
    redis: Redis, keys: AttemptKeys, user_id: str, resource_id: str, at_least: int
) -> int | None:
    index = keys.index(user_id, resource_id)
    members = cast(
        list[bytes],
        redis.zrevrangebyscore(index, "+inf", at_least, start=0, num=INDEX_CHECK_LIMIT),
    )
    if not members:
        return None
    parsed = [(member, as_attempt(member)) for member in members]
    valid = [(member, number) for member, number in parsed if number is not None]
    alive = _exists(redis, keys, user_id, resource_id, [number for _, number in valid])
    dead = [member for member, number in parsed if number is None]
    dead += [member for (member, _), ok in zip(valid, alive, strict=True) if not ok]
    if dead:
        redis.zrem(index, *dead)
    return next((number for (_, number), ok in zip(valid, alive, strict=True) if ok), None)


def _from_probes(
    redis: Redis, keys: AttemptKeys, user_id: str, resource_id: str, at_least: int
) -> int | None:
    numbers = list(range(at_least, at_least + PROBE_WINDOW))
    alive = _exists(redis, keys, user_id, resource_id, numbers)
    return max((n for n, ok in zip(numbers, alive, strict=True) if ok), default=None)


def _exists(
    redis: Redis, keys: AttemptKeys, user_id: str, resource_id: str, numbers: list[int]
) -> list[bool]:
    """Whether each attempt's state key exists: single-key ``EXISTS`` in one round trip."""
    if not numbers:
        return []
    pipe = redis.pipeline(transaction=False)
    for number in numbers:
        pipe.exists(keys.state(user_id, resource_id, number))
    return [bool(ok) for ok in pipe.execute()]
