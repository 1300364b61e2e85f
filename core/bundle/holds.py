"""Held builds, pins and delete evidence of courses, in Redis (docs/bundle.md "Publish safety").

A held build is a rebuild that validation refused to publish (or a ``404`` for a built course):
it waits in ``{course:ID}:held`` for its confirmation re-read, listed in ``idx:held`` scored by
when that re-read is due. A pin (``{course:ID}:pin``, listed in ``idx:pinned``) freezes the
course's live bundle. Delete events leave evidence in ``{course:ID}:removals`` that explains
losses to the next validation. The cross-course listings are updated after the course's own key
(like the other indexes), so they may lag it briefly.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import orjson
import redis

from core.bundle.codec import decode_bundle
from core.bundle.model import BundleDoc
from core.errors import BundleError
from core.keys import Keys

PINNED = "pinned"  # the reason of a build recorded while its course is pinned


@dataclass(frozen=True, slots=True)
class HeldBuild:
    """A build waiting for confirmation: why, what it is (digest, zstd JSON) and when to re-read."""

    course_id: str
    reason: str
    detail: str
    generation: int
    digest: str
    held_at: float
    due: float
    attempts: int
    zstd: bytes | None = None  # the held document (None for a held deletion or a pinned one)
    source_modified: str = ""
    totals: str = "{}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary (no bytes)."""
        return {
            "courseId": self.course_id,
            "reason": self.reason,
            "detail": self.detail,
            "generation": self.generation,
            "heldAt": self.held_at,
            "due": self.due,
            "attempts": self.attempts,
            "totals": orjson.loads(self.totals or "{}"),
            "hasBuild": self.zstd is not None,
        }

    def doc(self) -> BundleDoc | None:
        """The held document, or None (a held deletion, or unreadable bytes)."""
        if self.zstd is None:
            return None
        try:
            return decode_bundle(self.zstd)
        except BundleError:
            return None


@dataclass(frozen=True, slots=True)
class Pin:
    """A pinned course: since when and the operator's note."""

    course_id: str
    pinned_at: float
    note: str


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _held(course_id: str, raw: Any) -> HeldBuild | None:
    if not raw:
        return None
    got = {k.decode(): v for k, v in cast(dict[bytes, bytes], raw).items()}
    try:
        return HeldBuild(
            course_id=course_id,
            reason=_text(got["reason"]),
            detail=_text(got.get("detail", b"")),
            generation=int(got["generation"]),
            digest=_text(got["digest"]),
            held_at=float(got["held_at"]),
            due=float(got["due"]),
            attempts=int(got["attempts"]),
            zstd=got.get("zstd"),
            source_modified=_text(got.get("source_modified", b"")),
            totals=_text(got.get("totals", b"{}")),
        )
    except (KeyError, ValueError):
        return None


def _pin(course_id: str, raw: Any) -> Pin | None:
    if raw is None:
        return None
    try:
        data = orjson.loads(raw)
        return Pin(course_id, float(data.get("at", 0.0)), str(data.get("note", "")))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return Pin(course_id, 0.0, "")  # a damaged pin still pins: freezing is the safe side


class PublishHolds:
    """Reads and writes held builds, pins and delete evidence."""

    def __init__(self, redis_client: redis.Redis, keys: Keys, *, removals_ttl_s: int) -> None:
        self._redis = redis_client
        self._keys = keys
        self._removals_ttl_s = removals_ttl_s

    def state(self, course_id: str) -> tuple[Pin | None, HeldBuild | None, list[str]]:
        """The course's pin, held build and delete evidence, in one round trip."""
        k = self._keys
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(k.pin(course_id))
        pipe.hgetall(k.held(course_id))
        pipe.smembers(k.removals(course_id))
        pin_raw, held_raw, members = pipe.execute()
        return (
            _pin(course_id, pin_raw),
            _held(course_id, held_raw),
            sorted(m.decode() for m in members),
        )

    # --- held builds ------------------------------------------------------------------------
    def held(self, course_id: str) -> HeldBuild | None:
        """The course's held build, or None (an unreadable one counts as none)."""
        return _held(course_id, self._redis.hgetall(self._keys.held(course_id)))

    def hold(self, held: HeldBuild) -> None:
        """Store ``held`` as the course's held build (replacing any) and list it by due time."""
        key = self._keys.held(held.course_id)
        fields: dict[str, Any] = {
            "reason": held.reason,
            "detail": held.detail[:1000],
            "generation": held.generation,
            "digest": held.digest,
            "held_at": repr(held.held_at),
            "due": repr(held.due),
            "attempts": held.attempts,
            "source_modified": held.source_modified,
            "totals": held.totals,
        }
        if held.zstd is not None:
            fields["zstd"] = held.zstd
        with self._redis.pipeline(transaction=True) as tx:
            tx.delete(key)
            tx.hset(key, mapping=fields)
            tx.execute()
        if held.reason == PINNED:
            # Recorded while pinned: nothing to confirm, so not listed as awaiting a re-read.
            self._redis.zrem(self._keys.held_index(), held.course_id)
        else:
            self._redis.zadd(self._keys.held_index(), {held.course_id: int(held.due * 1000)})

    def is_held(self, course_id: str) -> bool:
        """Whether the course has a held build (one EXISTS)."""
        return bool(self._redis.exists(self._keys.held(course_id)))

    def drop(self, course_id: str) -> bool:
        """Forget the course's held build; True when there was one."""
        gone = bool(self._redis.delete(self._keys.held(course_id)))
        self._redis.zrem(self._keys.held_index(), course_id)
        return gone

    def held_courses(self) -> list[tuple[str, float]]:
        """Every held course with its re-read due time (epoch s), soonest first."""
        rows = cast(
            list[tuple[bytes, float]],
            self._redis.zrange(self._keys.held_index(), 0, -1, withscores=True),
        )
        return [(member.decode(), float(score) / 1000.0) for member, score in rows]

    def overdue(self, *, now: float, grace_s: float) -> list[str]:
        """Held courses whose re-read is more than ``grace_s`` late (its message was lost)."""
        cutoff = int((now - grace_s) * 1000)
        found = cast(list[bytes], self._redis.zrangebyscore(self._keys.held_index(), 0, cutoff))
        return [member.decode() for member in found]

    # --- pins -------------------------------------------------------------------------------
    def pin(self, course_id: str, note: str = "", *, now: float | None = None) -> Pin:
        """Freeze the course's live bundle (rebuilds still run, nothing is swapped)."""
        pin = Pin(course_id, time.time() if now is None else now, note[:500])
        self._redis.set(
            self._keys.pin(course_id), orjson.dumps({"at": pin.pinned_at, "note": pin.note})
        )
        self._redis.sadd(self._keys.pinned_index(), course_id)
        return pin

    def unpin(self, course_id: str) -> bool:
        """Release a pin; True when the course was pinned."""
        gone = bool(self._redis.delete(self._keys.pin(course_id)))
        self._redis.srem(self._keys.pinned_index(), course_id)
        return gone

    def pinned(self, course_id: str) -> Pin | None:
        """The course's pin, or None."""
        return _pin(course_id, self._redis.get(self._keys.pin(course_id)))

    def pinned_courses(self) -> list[str]:
        """Ids of every pinned course, sorted."""
        members = cast(set[bytes], self._redis.smembers(self._keys.pinned_index()))
        return sorted(m.decode() for m in members)

    def counts(self) -> tuple[int, int]:
        """(held, pinned) course counts, for the gauge."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.zcard(self._keys.held_index())
        pipe.scard(self._keys.pinned_index())
        held, pinned = pipe.execute()
        return int(held), int(pinned)

    # --- delete evidence --------------------------------------------------------------------
    def note_removals(self, course_id: str, members: Iterable[str]) -> None:
        """Remember deletions (``component:ID``, ``link:ID``, ``resource:ID``) for the course."""
        found = list(members)
        if not found:
            return
        key = self._keys.removals(course_id)
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.sadd(key, *found)
            pipe.expire(key, self._removals_ttl_s)
            pipe.execute()

    def removals(self, course_id: str) -> list[str]:
        """The deletions seen since the course's last publish."""
        members = cast(set[bytes], self._redis.smembers(self._keys.removals(course_id)))
        return sorted(m.decode() for m in members)

    def settle_removals(self, course_id: str, members: Iterable[str]) -> None:
        """A publish covered these deletions: forget them (later ones stay)."""
        found = list(members)
        if found:
            self._redis.srem(self._keys.removals(course_id), *found)
