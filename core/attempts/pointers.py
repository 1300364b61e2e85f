"""The active-attempt pointer of one learner and resource: read (refreshing its TTL), set, clear.

Every write also raises the high-water mark (hwm), so a number that was ever the pointer stays
below every attempt handed out later. Both writes are Lua scripts (``pointer_*.lua``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Literal, cast

from redis import Redis

from core.attempts.keys import AttemptKeys, check_attempt

ClaimMode = Literal["set", "nx", "next"]

_CLAIM = resources.files(__package__).joinpath("pointer_claim.lua").read_text()
_CLEAR = resources.files(__package__).joinpath("pointer_clear.lua").read_text()


@dataclass(frozen=True, slots=True)
class Claim:
    """What a claim left in the pointer, and whether this call wrote it."""

    number: int
    written: bool


def as_attempt(raw: bytes | str | None) -> int | None:
    """A stored attempt number, or None when absent or not a positive integer."""
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    if not text.isascii() or not text.isdigit():
        return None
    number = int(text)
    return number if number >= 1 else None


class AttemptPointers:
    """Pointer helpers bound to one Redis client, one key layout and one TTL."""

    def __init__(self, redis: Redis, keys: AttemptKeys, *, ttl_s: int) -> None:
        if ttl_s < 1:
            raise ValueError(f"attempt pointer TTL must be at least 1 s, got {ttl_s}")
        self._redis = redis
        self._keys = keys
        self._ttl_s = ttl_s
        self._claim = redis.register_script(_CLAIM)
        self._clear = redis.register_script(_CLEAR)

    def get(self, user_id: str, resource_id: str) -> int | None:
        """The active attempt number, or None; a hit gets a fresh TTL (``GETEX``)."""
        raw = self._redis.getex(self._keys.pointer(user_id, resource_id), ex=self._ttl_s)
        return as_attempt(cast(bytes | str | None, raw))

    def set(self, user_id: str, resource_id: str, attempt: int) -> None:
        """Point at ``attempt`` whatever the pointer held."""
        self.claim(user_id, resource_id, attempt, mode="set")

    def claim(self, user_id: str, resource_id: str, attempt: int, *, mode: ClaimMode) -> Claim:
        """Run ``pointer_claim.lua``: ``set`` always writes; ``nx`` keeps an existing pointer;
        ``next`` keeps an existing pointer or writes ``max(attempt, hwm + 1)``."""
        keys = [self._keys.pointer(user_id, resource_id), self._keys.hwm(user_id, resource_id)]
        number, written = self._claim(keys=keys, args=[check_attempt(attempt), self._ttl_s, mode])
        return Claim(number=int(number), written=bool(written))

    def clear_if(self, user_id: str, resource_id: str, attempt: int) -> bool:
        """Delete the pointer only if it still holds ``attempt``; True when it did."""
        keys = [self._keys.pointer(user_id, resource_id), self._keys.hwm(user_id, resource_id)]
        return bool(self._clear(keys=keys, args=[check_attempt(attempt), self._ttl_s]))

    def high_water_mark(self, user_id: str, resource_id: str) -> int:
        """The highest attempt number handed out or saved so far (0 when none is remembered)."""
        raw = self._redis.get(self._keys.hwm(user_id, resource_id))
        return as_attempt(cast(bytes | str | None, raw)) or 0
