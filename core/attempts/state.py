"""Cached assessment state per attempt, and the index that lets a lost pointer be recovered.

The web tier owns the state's content; this module only writes it for Python callers, always
together with the index (sorted set, member = score = attempt number) and the high-water mark.
State keys written without the index (older web-tier code) are found by a bounded SCAN instead.
"""

from __future__ import annotations

from importlib import resources
from typing import cast

from redis import Redis

from core.attempts.keys import AttemptKeys, check_attempt
from core.attempts.pointers import as_attempt
from core.logging import get_logger

log = get_logger(__name__)

_SAVE = resources.files(__package__).joinpath("state_save.lua").read_text()

INDEX_CHECK_LIMIT = 100  # newest index members checked for a live state key
SCAN_BATCH = 500


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
    scan_limit: int = 1000,
    at_least: int = 1,
) -> int | None:
    """The highest attempt number ``>= at_least`` whose state is cached, or None.

    The index answers first (members whose state is gone are pruned on the way); only when it
    names no live state does a SCAN look for state keys, stopping after ``scan_limit`` keys.
    """
    found = _from_index(redis, keys, user_id, resource_id, at_least)
    if found is None and scan_limit > 0:
        found = _from_scan(
            redis, keys, user_id, resource_id, at_least=at_least, scan_limit=scan_limit
        )
    return found


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
    pipe = redis.pipeline(transaction=False)
    for _, number in valid:
        pipe.exists(keys.state(user_id, resource_id, number))
    alive = [bool(ok) for ok in pipe.execute()] if valid else []
    dead = [member for member, number in parsed if number is None]
    dead += [member for (member, _), ok in zip(valid, alive, strict=True) if not ok]
    if dead:
        redis.zrem(index, *dead)
    return next((number for (_, number), ok in zip(valid, alive, strict=True) if ok), None)


def _from_scan(
    redis: Redis,
    keys: AttemptKeys,
    user_id: str,
    resource_id: str,
    *,
    at_least: int,
    scan_limit: int,
) -> int | None:
    pattern = keys.state_scan_pattern(user_id, resource_id)
    best: int | None = None
    cursor, examined = 0, 0
    while True:
        count = min(SCAN_BATCH, scan_limit - examined)
        cursor, batch = cast(
            tuple[int, list[bytes]], redis.scan(cursor=cursor, match=pattern, count=count)
        )
        examined += count
        for key in batch:
            number = keys.attempt_of_state_key(user_id, resource_id, key)
            if number is not None and number >= at_least and (best is None or number > best):
                best = number
        if int(cursor) == 0:
            return best
        if examined >= scan_limit:
            log.warning(
                "attempt_state_scan_truncated",
                resource_id=resource_id,
                scan_limit=scan_limit,
                found=best,
            )
            return best
