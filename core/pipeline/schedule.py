"""The durable schedule of delayed work: "run task T with these arguments at time D", in Redis.

Delayed rebuilds and retries used to be broker messages with a countdown, held unacknowledged in
a worker's memory until due. Here they are entries of a sorted set scored by due time, sharded by
hash tag (``{sched:N}``) so that every script touches one slot of a Redis Cluster. Each worker's
scheduler loop claims due entries (one claimer per entry, by script) and enqueues them as
ordinary, immediate task messages; a claim is a lease, so a claimer killed before it enqueued
gives the entry back. An entry id names the work (``rebuild:COURSE``), so one course has at most
one pending rebuild.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, cast

import orjson
import redis

from core.events.broker import REBUILDS_QUEUE, TASK_REBUILD
from core.keys import Keys
from core.logging import get_logger
from core.pipeline.debounce import Debouncer

log = get_logger(__name__)


def _lua(name: str) -> str:
    return resources.files("core.pipeline").joinpath("lua", f"{name}.lua").read_text("utf-8")


@dataclass(frozen=True, slots=True)
class DueEntry:
    """One claimed entry: what to enqueue, when it was due, and the payload as claimed."""

    entry_id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    due: float
    shard: int
    claim_ms: int
    raw: bytes = field(repr=False)


class Schedule:
    """Put, claim, acknowledge and cancel entries of the durable schedule."""

    def __init__(
        self,
        redis_client: redis.Redis,
        keys: Keys,
        *,
        shards: int = 8,
        claim_lease_ms: int = 15_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis_client
        self._keys = keys
        self.shards = max(1, shards)
        self.claim_lease_ms = claim_lease_ms
        self._clock = clock
        self._put = redis_client.register_script(_lua("schedule_put"))
        self._claim = redis_client.register_script(_lua("schedule_claim"))
        self._ack = redis_client.register_script(_lua("schedule_ack"))

    def shard_of(self, entry_id: str) -> int:
        """The shard an entry lives in (stable: crc32 of its id)."""
        return zlib.crc32(entry_id.encode()) % self.shards

    def _shard_keys(self, shard: int) -> list[str]:
        k = self._keys
        return [k.schedule_due(shard), k.schedule_claims(shard), k.schedule_payload(shard)]

    def put(
        self,
        entry_id: str,
        task: str,
        *,
        due: float,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        queue: str,
    ) -> None:
        """Schedule ``task(*args, **kwargs)`` on ``queue`` at ``due`` (epoch seconds)."""
        payload = orjson.dumps(
            {"task": task, "args": list(args), "kwargs": kwargs or {}, "q": queue}
        )
        due_key, _, payload_key = self._shard_keys(self.shard_of(entry_id))
        self._put(keys=[due_key, payload_key], args=[entry_id, int(due * 1000), payload])

    def claim(
        self, shards: Sequence[int] | None = None, *, limit: int = 100, now: float | None = None
    ) -> list[DueEntry]:
        """Claim every due entry (up to ``limit`` per shard) of the given shards, one round trip."""
        now_ms = int((self._clock() if now is None else now) * 1000)
        chosen = range(self.shards) if shards is None else shards
        pipe = self._redis.pipeline(transaction=False)
        for shard in chosen:
            self._claim(
                keys=self._shard_keys(shard), args=[now_ms, self.claim_lease_ms, limit], client=pipe
            )
        claimed: list[DueEntry] = []
        for shard, flat in zip(chosen, cast(list[list[bytes]], pipe.execute()), strict=True):
            for i in range(0, len(flat), 4):
                entry = _decode(shard, flat[i : i + 4])
                if entry is None:
                    # Nothing can run it; left claimed it would come back on every lease lapse.
                    log.error(
                        "schedule_entry_undecodable", entry_id=_text(flat[i]), outcome="dropped"
                    )
                    self.cancel(_text(flat[i]), shard=shard)
                else:
                    claimed.append(entry)
        return claimed

    def ack(self, entry: DueEntry) -> None:
        """The entry's task message is on the broker: forget the entry (unless it was re-put).

        Acknowledged in the shard it was claimed from, so a changed shard count cannot orphan it;
        only this claim is removed (its lease expiry is the token), never another worker's.
        """
        self._ack(
            keys=self._shard_keys(entry.shard), args=[entry.entry_id, entry.raw, entry.claim_ms]
        )

    def cancel(self, entry_id: str, *, shard: int | None = None) -> None:
        """Drop a pending entry (its work is no longer wanted)."""
        home = self.shard_of(entry_id) if shard is None else shard
        due_key, claims_key, payload_key = self._shard_keys(home)
        pipe = self._redis.pipeline(transaction=True)
        pipe.zrem(due_key, entry_id)
        pipe.zrem(claims_key, entry_id)
        pipe.hdel(payload_key, entry_id)
        pipe.execute()

    def due_at(self, entry_id: str) -> float | None:
        """When the entry is due (epoch seconds), or None if nothing is pending under that id."""
        due_key, claims_key, _ = self._shard_keys(self.shard_of(entry_id))
        score = self._redis.zscore(due_key, entry_id)
        if score is None:
            score = self._redis.zscore(claims_key, entry_id)
        return None if score is None else float(cast(float, score)) / 1000.0

    def due_at_many(self, entry_ids: Sequence[str]) -> list[float | None]:
        """``due_at`` of many entries in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for entry_id in entry_ids:
            due_key, claims_key, _ = self._shard_keys(self.shard_of(entry_id))
            pipe.zscore(due_key, entry_id)
            pipe.zscore(claims_key, entry_id)
        raw = pipe.execute()
        out: list[float | None] = []
        for due, claimed in zip(raw[0::2], raw[1::2], strict=True):
            score = due if due is not None else claimed
            out.append(None if score is None else float(score) / 1000.0)
        return out

    def size(self) -> int:
        """Entries waiting or claimed, over every shard."""
        pipe = self._redis.pipeline(transaction=False)
        for shard in range(self.shards):
            due_key, claims_key, _ = self._shard_keys(shard)
            pipe.zcard(due_key)
            pipe.zcard(claims_key)
        return sum(int(n) for n in pipe.execute())


def _decode(shard: int, fields: list[bytes]) -> DueEntry | None:
    entry_id, due_ms, raw, claim_ms = fields
    try:
        doc = orjson.loads(raw)
        return DueEntry(
            entry_id=entry_id.decode(),
            task=str(doc["task"]),
            args=list(doc["args"]),
            kwargs=dict(doc["kwargs"]),
            queue=str(doc["q"]),
            due=float(due_ms) / 1000.0,
            shard=shard,
            claim_ms=int(claim_ms),
            raw=raw,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def rebuild_entry_id(course_id: str) -> str:
    """The schedule entry of a course's pending rebuild (one per course)."""
    return f"rebuild:{course_id}"


def put_rebuild(
    schedule: Schedule, course_id: str, *, due: float, failures: int, trailing: bool
) -> None:
    """Put the course's one pending rebuild on the schedule (a later put moves it)."""
    schedule.put(
        rebuild_entry_id(course_id),
        TASK_REBUILD,
        due=due,
        args=[course_id],
        kwargs={"failures": failures, "trailing": trailing},
        queue=REBUILDS_QUEUE,
    )


class ScheduledRebuilds:
    """Asks for a course's rebuild from a process with no broker (the API): mark it dirty, and
    when that asks for a rebuild, put one on the schedule (due now, or when the window closes).

    A parked course is left parked: its dead letter already asks a person to look.
    """

    def __init__(
        self,
        debouncer: Debouncer,
        schedule: Schedule,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._debouncer = debouncer
        self._schedule = schedule
        self._clock = clock

    def __call__(self, course_id: str) -> None:
        backoff = self._debouncer.backoff(course_id)
        if backoff is not None and backoff.parked:
            log.info("rebuild_not_requested", course_id=course_id, outcome="parked")
            return
        countdown = self._debouncer.note_dirty(course_id)
        if countdown is None:
            return  # a rebuild is already pending and covers it
        put_rebuild(
            self._schedule,
            course_id,
            due=self._clock() + countdown,
            failures=0,
            trailing=countdown > 0,
        )
