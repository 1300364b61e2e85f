"""Which attempt a learner is on: pointer first, then cached state, then OneRoster.

Once an attempt is handed out, every caller gets the same number until it is reset, however
OneRoster's results flap; OneRoster is asked only when neither pointer nor cached state exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from redis import Redis

from core.attempts.keys import AttemptKeys, check_attempt
from core.attempts.pointers import AttemptPointers
from core.attempts.state import delete_state, has_state, latest_cached_attempt
from core.errors import AttemptConflict, NoActiveAttempt
from core.logging import get_logger

if TYPE_CHECKING:
    from core.singleflight.distributed import DistributedFlight

log = get_logger(__name__)

Source = Literal["pointer", "recovered", "derived"]


class OnceRunner(Protocol):
    """Runs ``fn`` once for concurrent callers of ``name``, across processes; all get its value."""

    def run(self, name: str, fn: Callable[[], int]) -> int: ...


class FlightOnce:
    """A OnceRunner over a DistributedFlight: its leader derives, every follower gets the number."""

    def __init__(self, flight: DistributedFlight) -> None:
        self._flight = flight

    def run(self, name: str, fn: Callable[[], int]) -> int:
        return int(self._flight.run(name, lambda _lease: fn()).value)


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt number, where it came from, and whether this call handed it out."""

    number: int
    source: Source
    created: bool = False


class AttemptService:
    """Resolve, read and reset the active attempt of one learner and resource."""

    def __init__(
        self,
        redis: Redis,
        keys: AttemptKeys,
        *,
        derive: Callable[[str, str], int],
        once: OnceRunner | None = None,
        ttl_s: int,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._derive = derive
        self._once = once
        self._pointers = AttemptPointers(redis, keys, ttl_s=ttl_s)

    def active(self, user_id: str, resource_id: str) -> Attempt:
        """The attempt in progress (``pointer`` or ``recovered``); NoActiveAttempt when none."""
        found = self._find(user_id, resource_id)
        if found is None:
            raise NoActiveAttempt("no active attempt", user_id=user_id, resource_id=resource_id)
        return found

    def resolve(self, user_id: str, resource_id: str) -> Attempt:
        """The attempt in progress, or a new one numbered from OneRoster and the hwm.

        Concurrent callers agree: derivation is single-flight under ``once``, and the pointer is
        claimed by one Lua script that keeps whatever pointer another caller set first.
        """
        found = self._find(user_id, resource_id)
        if found is not None:
            return found
        derived = self._derive_once(user_id, resource_id)
        if derived is None:  # another resolver claimed while this one queued for the flight
            found = self._find(user_id, resource_id)
            if found is not None:
                return found
            derived = check_attempt(self._derive(user_id, resource_id))
        claim = self._pointers.claim(user_id, resource_id, derived, mode="next")
        if not claim.written:
            return Attempt(number=claim.number, source="pointer")
        log.info(
            "attempt_created",
            user_id=user_id,
            resource_id=resource_id,
            attempt=claim.number,
            derived=derived,
        )
        return Attempt(number=claim.number, source="derived", created=True)

    def reset(self, user_id: str, resource_id: str, attempt: int) -> int:
        """Delete ``attempt``'s state and pointer; AttemptConflict if another attempt is active.

        The hwm keeps the cleared number, so the next attempt is above it even while OneRoster
        has not recorded it yet.
        """
        check_attempt(attempt)
        current = self.active(user_id, resource_id)
        if current.number != attempt:
            raise AttemptConflict(
                "another attempt is active",
                active=current.number,
                attempt=attempt,
                user_id=user_id,
                resource_id=resource_id,
            )
        state_deleted = delete_state(self._redis, self._keys, user_id, resource_id, attempt)
        pointer_cleared = self._pointers.clear_if(user_id, resource_id, attempt)
        log.info(
            "attempt_reset",
            user_id=user_id,
            resource_id=resource_id,
            attempt=attempt,
            state_deleted=state_deleted,
            pointer_cleared=pointer_cleared,
        )
        return attempt

    def _find(self, user_id: str, resource_id: str) -> Attempt | None:
        number = self._pointers.get(user_id, resource_id)
        if number is None:
            return self._recover(user_id, resource_id)
        if not has_state(self._redis, self._keys, user_id, resource_id, number):
            # The pointer still wins: the caller recreates the state under the same number.
            log.warning(
                "attempt_pointer_stale", user_id=user_id, resource_id=resource_id, attempt=number
            )
        return Attempt(number=number, source="pointer")

    def _recover(self, user_id: str, resource_id: str) -> Attempt | None:
        # States below the hwm belong to attempts superseded by a later one: never resumed.
        floor = max(self._pointers.high_water_mark(user_id, resource_id), 1)
        number = latest_cached_attempt(
            self._redis, self._keys, user_id, resource_id, at_least=floor
        )
        if number is None:
            return None
        claim = self._pointers.claim(user_id, resource_id, number, mode="nx")
        if not claim.written:
            return Attempt(number=claim.number, source="pointer")
        log.info(
            "attempt_pointer_recovered", user_id=user_id, resource_id=resource_id, attempt=number
        )
        return Attempt(number=number, source="recovered")

    def _derive_once(self, user_id: str, resource_id: str) -> int | None:
        """OneRoster's next number, single-flight; None when a pointer appeared meanwhile."""
        if self._once is None:
            return check_attempt(self._derive(user_id, resource_id))

        def derive() -> int:
            # A flight that starts after another resolver's claim must not ask OneRoster again.
            if self._pointers.get(user_id, resource_id) is not None:
                return 0
            return self._derive(user_id, resource_id)

        # The hash tag keeps the flight's keys in one Redis Cluster slot.
        derived = self._once.run(f"{{attempt:{user_id}:{resource_id}}}:derive", derive)
        return None if derived == 0 else check_attempt(derived)
