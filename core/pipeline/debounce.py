"""Per-course debounce and rebuild lease, kept in Redis so every worker process agrees.

An event marks the course dirty (a sequence number grows) and asks for a rebuild. A quiet course
is rebuilt at once (leading edge). While a rebuild runs, or within the debounce window after one
started, further events schedule at most one more rebuild, delayed to the end of the window
(trailing edge). The rebuild remembers the sequence it started from; if events arrived meanwhile it
schedules the trailing rebuild itself, else it clears the dirty mark. A cap bounds how long a
change can wait.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis

from core.keys import Keys

# KEYS: dirty, scheduled-flag, lease, window, dirty_set, failures ; ARGV: course_id, now_ms,
#       flag_ttl_ms, debounce_ms, max_wait_ms
# Returns the countdown in ms for a rebuild to enqueue, or -1 when one is already scheduled.
# A parked course (its failures hash says so) gets a fresh retry budget: the event may be the fix.
_NOTE_DIRTY = """
local now = tonumber(ARGV[2])
if redis.call('HEXISTS', KEYS[6], 'parked') == 1 then redis.call('DEL', KEYS[6]) end
redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSETNX', KEYS[1], 'first', now)
redis.call('HSET', KEYS[1], 'last', now)
redis.call('ZADD', KEYS[5], 'NX', now, ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -1
end
redis.call('SET', KEYS[2], now, 'PX', ARGV[3])
local countdown = 0
local window = redis.call('PTTL', KEYS[4])
if window and window > 0 then countdown = window end
if redis.call('EXISTS', KEYS[3]) == 1 and countdown < tonumber(ARGV[4]) then
  countdown = tonumber(ARGV[4])
end
local first = tonumber(redis.call('HGET', KEYS[1], 'first'))
local cap = first + tonumber(ARGV[5]) - now
if cap < 0 then cap = 0 end
if countdown > cap then countdown = cap end
return countdown
"""

# KEYS: lease, scheduled-flag, window, dirty ; ARGV: token, lease_ms, debounce_ms, now_ms,
#       trailing (1/0), max_wait_ms
# Returns {1, seq, first} when the lease was taken, {2, wait_ms} when a trailing rebuild should wait
# for quiet, {0} when another rebuild holds the lease.
_BEGIN = """
local now = tonumber(ARGV[4])
-- Read before any write: a damaged key fails the script before it takes the lease.
local seq = redis.call('HGET', KEYS[4], 'seq') or '0'
local first_text = redis.call('HGET', KEYS[4], 'first') or '0'
if ARGV[5] == '1' then
  local last = tonumber(redis.call('HGET', KEYS[4], 'last') or '0')
  local first = tonumber(first_text)
  local quiet_for = now - last
  local debounce = tonumber(ARGV[3])
  if last > 0 and first > 0 and quiet_for < debounce then
    local wait = debounce - quiet_for
    local cap = first + tonumber(ARGV[6]) - now
    if cap > 0 then
      if wait > cap then wait = cap end
      return {2, wait}
    end
  end
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
  -- Every event so far is covered by this rebuild: the next one starts a new wait.
  redis.call('HDEL', KEYS[4], 'first')
  return {1, seq, first_text}
end
-- Another rebuild runs: hand the trailing edge to it (its finish sees no flag and trails).
redis.call('DEL', KEYS[2])
return {0}
"""

# KEYS: dirty, scheduled-flag, window, dirty_set, lease ; ARGV: course_id, seq_at_start, now_ms,
#       flag_ttl_ms, token
# Returns -2 clean, -1 a rebuild is already scheduled, else the trailing rebuild's countdown (ms).
_FINISH = """
local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
if redis.call('GET', KEYS[5]) == ARGV[5] then redis.call('DEL', KEYS[5]) end
if seq == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
  return -2
end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
local window = redis.call('PTTL', KEYS[3])
if window and window > 0 then return window end
return 0
"""

_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class RebuildTicket:
    """A held rebuild lease: the owner token and the dirty sequence the rebuild covers."""

    course_id: str
    token: str
    seq: str
    dirty_since_ms: int


@dataclass(frozen=True, slots=True)
class Wait:
    """A trailing rebuild came too early: events are still arriving; try again after ``seconds``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Backoff:
    """Consecutive failed rebuilds of a course and when its one pending retry is due.

    ``parked``: the retry budget is spent on failures retrying cannot fix; nothing is pending
    until an event or a replay marks the course dirty again.
    """

    failures: int
    due: float
    parked: bool = False


@dataclass(frozen=True, slots=True)
class CourseState:
    """What reconcile needs of one dirty course: who rebuilds it now, and its backoff."""

    lease_holder: str | None
    backoff: Backoff | None


@dataclass(frozen=True, slots=True)
class Finish:
    """What to do after a rebuild: nothing (clean / already scheduled) or a trailing rebuild."""

    clean: bool
    trailing_countdown_s: float | None


class Debouncer:
    """Dirty marks, the scheduled flag, the debounce window and the rebuild lease of courses."""

    def __init__(
        self,
        redis_client: redis.Redis,
        keys: Keys,
        *,
        debounce_s: float = 0.25,
        max_wait_s: float = 5.0,
        lease_ms: int = 60_000,
        park_ttl_s: int = 7 * 86400,
    ) -> None:
        self._redis = redis_client
        self._keys = keys
        self.debounce_ms = max(1, int(debounce_s * 1000))
        self.max_wait_ms = max(self.debounce_ms, int(max_wait_s * 1000))
        self.lease_ms = lease_ms
        # The flag outlives any normal wait so it never wedges: a lost task frees it by expiry.
        self.flag_ttl_ms = self.max_wait_ms * 4 + lease_ms
        self.park_ttl_s = park_ttl_s
        self._note = redis_client.register_script(_NOTE_DIRTY)
        self._begin = redis_client.register_script(_BEGIN)
        self._finish = redis_client.register_script(_FINISH)
        self._extend = redis_client.register_script(_EXTEND)
        self._release = redis_client.register_script(_RELEASE)

    def _flag(self, course_id: str) -> str:
        return self._keys.course_tag(course_id) + ":scheduled"

    def note_dirty(self, course_id: str, *, now: float | None = None) -> float | None:
        """Mark the course dirty; the countdown (s) of a rebuild to enqueue, or None if one is due.

        None means a rebuild is already scheduled and will cover this change.
        """
        k = self._keys
        now_ms = int((time.time() if now is None else now) * 1000)
        result = self._note(
            keys=[
                k.dirty(course_id),
                self._flag(course_id),
                k.rebuild_lease(course_id),
                k.rebuild_window(course_id),
                k.dirty_set(),
                k.rebuild_failures(course_id),
            ],
            args=[course_id, now_ms, self.flag_ttl_ms, self.debounce_ms, self.max_wait_ms],
        )
        countdown = int(result)
        return None if countdown < 0 else countdown / 1000.0

    def begin(
        self, course_id: str, *, trailing: bool = False, now: float | None = None
    ) -> RebuildTicket | Wait | None:
        """Take the rebuild lease and open the debounce window.

        None: another rebuild holds the lease. ``Wait``: a trailing rebuild while events still
        arrive; it waits for ``debounce`` of quiet, but never past ``max_wait`` after the first
        event it covers.
        """
        k = self._keys
        token = secrets.token_hex(12)
        now_ms = int((time.time() if now is None else now) * 1000)
        result = self._begin(
            keys=[
                k.rebuild_lease(course_id),
                self._flag(course_id),
                k.rebuild_window(course_id),
                k.dirty(course_id),
            ],
            args=[
                token,
                self.lease_ms,
                self.debounce_ms,
                now_ms,
                "1" if trailing else "0",
                self.max_wait_ms,
            ],
        )
        status = int(result[0])
        if status == 2:
            return Wait(int(result[1]) / 1000.0)
        if status != 1:
            return None
        seq = _text(result[1])
        return RebuildTicket(course_id, token, seq, int(_text(result[2]) or 0))

    def extend(self, ticket: RebuildTicket) -> bool:
        """Heartbeat: extend the lease if we still own it."""
        lease = self._keys.rebuild_lease(ticket.course_id)
        return bool(self._extend(keys=[lease], args=[ticket.token, self.lease_ms]))

    def release(self, ticket: RebuildTicket) -> bool:
        """Release the lease only if we still own it (a failed rebuild keeps the course dirty)."""
        lease = self._keys.rebuild_lease(ticket.course_id)
        return bool(self._release(keys=[lease], args=[ticket.token]))

    def finish(self, ticket: RebuildTicket, *, now: float | None = None) -> Finish:
        """Release the lease; clear the dirty mark if nothing arrived meanwhile, else trail once."""
        k = self._keys
        now_ms = int((time.time() if now is None else now) * 1000)
        result = int(
            self._finish(
                keys=[
                    k.dirty(ticket.course_id),
                    self._flag(ticket.course_id),
                    k.rebuild_window(ticket.course_id),
                    k.dirty_set(),
                    k.rebuild_lease(ticket.course_id),
                ],
                args=[ticket.course_id, ticket.seq, now_ms, self.flag_ttl_ms, ticket.token],
            )
        )
        if result == -2:
            return Finish(clean=True, trailing_countdown_s=None)
        if result == -1:
            return Finish(clean=False, trailing_countdown_s=None)
        return Finish(clean=False, trailing_countdown_s=result / 1000.0)

    def retry_countdown_s(self, course_id: str) -> float:
        """When a rebuild finds the lease held: try again after the window (or the debounce)."""
        pttl = int(cast(Any, self._redis.pttl(self._keys.rebuild_window(course_id))))
        return max(pttl, self.debounce_ms) / 1000.0

    def record_failure(
        self,
        course_id: str,
        countdown_of: Callable[[int], float],
        *,
        now: float | None = None,
        park: Callable[[int], bool] | None = None,
    ) -> Backoff:
        """Count a failed rebuild and hold the course until its retry is due.

        The backoff belongs to the course, not to a message: events during the wait join the
        pending retry (the scheduled flag is held), so upstream load does not grow with them.
        ``park(failures)`` true: no retry is held; the course waits for an event or a replay.
        """
        key = self._keys.rebuild_failures(course_id)
        failures = int(cast(Any, self._redis.hincrby(key, "count", 1)))
        moment = time.time() if now is None else now
        if park is not None and park(failures):
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(key, mapping={"due": repr(moment), "parked": repr(moment)})
            pipe.expire(key, self.park_ttl_s)
            pipe.delete(self._flag(course_id))
            pipe.execute()
            return Backoff(failures, moment, parked=True)
        countdown = countdown_of(failures)
        due = moment + countdown
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, "due", repr(due))
        pipe.expire(key, 3600)
        pipe.set(self._flag(course_id), b"retry", px=int(countdown * 1000) + 1000)
        pipe.execute()
        return Backoff(failures, due)

    def backoff(self, course_id: str) -> Backoff | None:
        """The course's pending retry (or its parking), if its last rebuild failed."""
        raw = cast(
            list[Any],
            self._redis.hmget(self._keys.rebuild_failures(course_id), ["count", "due", "parked"]),
        )
        if raw[0] is None:
            return None
        return Backoff(int(raw[0]), float(raw[1] or 0), parked=raw[2] is not None)

    def states(self, course_ids: Sequence[str]) -> list[CourseState | Exception]:
        """Lease holder and backoff of many courses in one round trip (for reconcile).

        A course whose keys cannot be read (a damaged key) gets the exception in its place.
        """
        pipe = self._redis.pipeline(transaction=False)
        for course_id in course_ids:
            pipe.get(self._keys.rebuild_lease(course_id))
            pipe.hmget(self._keys.rebuild_failures(course_id), ["count", "due", "parked"])
        raw = pipe.execute(raise_on_error=False)
        out: list[CourseState | Exception] = []
        for lease, failures in zip(raw[0::2], raw[1::2], strict=True):
            if isinstance(lease, Exception) or isinstance(failures, Exception):
                out.append(lease if isinstance(lease, Exception) else failures)
                continue
            backoff = None
            if failures[0] is not None:
                backoff = Backoff(
                    int(failures[0]), float(failures[1] or 0), parked=failures[2] is not None
                )
            out.append(CourseState(None if lease is None else _text(lease), backoff))
        return out

    def repair(self, course_id: str) -> list[str]:
        """Delete the course's control keys that hold the wrong Redis type; their names.

        They are bookkeeping, not data: after the repair the course is marked dirty again, so
        the worst a damaged key costs is one extra rebuild.
        """
        k = self._keys
        expected = {
            k.dirty(course_id): b"hash",
            self._flag(course_id): b"string",
            k.rebuild_window(course_id): b"string",
            k.rebuild_lease(course_id): b"string",
            k.rebuild_failures(course_id): b"hash",
            k.dirty_set(): b"zset",
        }
        pipe = self._redis.pipeline(transaction=False)
        for key in expected:
            pipe.type(key)
        found = [t if isinstance(t, bytes) else str(t).encode() for t in pipe.execute()]
        damaged = [
            key
            for (key, want), got in zip(expected.items(), found, strict=True)
            if got not in (want, b"none")
        ]
        if damaged:
            self._redis.delete(*damaged)
            self.note_dirty(course_id)
        return damaged

    def clear_failures(self, course_id: str) -> None:
        """A rebuild succeeded: the next failure starts the backoff from the beginning."""
        self._redis.delete(self._keys.rebuild_failures(course_id))

    def clear(self, course_id: str) -> None:
        """Forget every debounce mark of the course (used when the course is deleted)."""
        k = self._keys
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(k.dirty(course_id), self._flag(course_id), k.rebuild_window(course_id))
        pipe.zrem(k.dirty_set(), course_id)
        pipe.execute()

    def dirty_courses(self, *, older_than_s: float = 0.0, now: float | None = None) -> list[str]:
        """Course ids dirty since before ``now - older_than_s`` (for reconcile)."""
        cutoff = int(((time.time() if now is None else now) - older_than_s) * 1000)
        raw = cast(list[bytes], self._redis.zrangebyscore(self._keys.dirty_set(), "-inf", cutoff))
        return [_text(r) for r in raw]

    def lease_holder(self, course_id: str) -> str | None:
        """The owner token of the running rebuild, if any (for ``bundles inspect``)."""
        value = self._redis.get(self._keys.rebuild_lease(course_id))
        return None if value is None else _text(value)

    def is_dirty(self, course_id: str) -> bool:
        """True while the course has changes no finished rebuild has covered."""
        return bool(self._redis.exists(self._keys.dirty(course_id)))


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
