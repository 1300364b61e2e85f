"""Accepting events: dedupe by id, then put the new ones on the broker, all or nothing.

``Publisher`` marks each id with ``SET NX EX`` (the 24 h idempotency window), sends only the
ids it newly marked (as the trimmed envelope, ``CourseEvent.queued``), and un-marks them if the
broker refuses or the backlog is full, so the producer's retry is not mistaken for a duplicate.
``publish_events`` is what a Python producer imports.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import redis

from core.errors import BrokerUnavailable, InvalidEvent
from core.events.backlog import BacklogGuard
from core.events.broker import default_backlog, default_sender
from core.events.model import CourseEvent
from core.events.validate import BatchProblem, InvalidBatch, parse_batch
from core.keys import Keys
from core.logging import get_logger
from core.settings import Settings, get_settings

log = get_logger(__name__)


class EventSender(Protocol):
    """Where accepted envelopes go (the broker)."""

    def send(self, envelopes: Sequence[dict[str, Any]]) -> None:
        """Put every envelope durably on the broker, or raise ``BrokerUnavailable``."""


@dataclass(frozen=True)
class PublishResult:
    """What one publish accepted (new ids, sent) and skipped (ids seen within the window)."""

    accepted: int
    duplicates: int
    accepted_ids: list[str]
    duplicate_ids: list[str]


class Publisher:
    """Dedupes events by id in Redis and sends the new ones through an ``EventSender``."""

    def __init__(
        self,
        redis: redis.Redis,
        keys: Keys,
        sender: EventSender,
        *,
        dedupe_ttl_s: int = 86400,
        backlog: BacklogGuard | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._sender = sender
        self._ttl_s = dedupe_ttl_s
        self._backlog = backlog

    def publish(self, events: Sequence[CourseEvent]) -> PublishResult:
        """Send the events not seen before, or raise with nothing accepted.

        ``BrokerUnavailable``: the store or broker failed; ``BacklogFull``: the queue is full.
        """
        if not events:
            return PublishResult(accepted=0, duplicates=0, accepted_ids=[], duplicate_ids=[])
        started = time.perf_counter()
        firsts: dict[str, CourseEvent] = {}
        repeated: list[str] = []
        for event in events:
            if event.id in firsts:
                repeated.append(event.id)
            else:
                firsts[event.id] = event

        marked = self._mark(list(firsts))
        new = [firsts[event_id] for event_id, is_new in zip(firsts, marked, strict=True) if is_new]
        seen = [event_id for event_id, is_new in zip(firsts, marked, strict=True) if not is_new]
        if new:
            try:
                if self._backlog is not None:
                    self._backlog.check(len(new))
                self._sender.send([event.queued() for event in new])
                if self._backlog is not None:
                    self._backlog.sent(len(new))
            except BaseException:
                self._unmark([event.id for event in new])
                raise
        result = PublishResult(
            accepted=len(new),
            duplicates=len(seen) + len(repeated),
            accepted_ids=[event.id for event in new],
            duplicate_ids=seen + repeated,
        )
        log.info(
            "events.published",
            accepted=result.accepted,
            duplicates=result.duplicates,
            outcome="ok",
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return result

    def _mark(self, event_ids: list[str]) -> list[bool]:
        """``SET NX EX`` every id in one round trip; True where this call set the mark."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            for event_id in event_ids:
                pipe.set(self._keys.event_seen(event_id), b"1", nx=True, ex=self._ttl_s)
            return [bool(answer) for answer in pipe.execute()]
        except redis.RedisError as exc:
            raise BrokerUnavailable(
                "the idempotency store did not answer; nothing was accepted",
                events=len(event_ids),
                error=repr(exc),
            ) from exc

    def _unmark(self, event_ids: list[str]) -> None:
        try:
            self._redis.delete(*(self._keys.event_seen(event_id) for event_id in event_ids))
        except redis.RedisError as exc:
            # The broker refused and the marks stay: a retry within the window would be taken
            # for a duplicate, so say loudly which ids are affected.
            log.error(
                "events.unmark_failed",
                event_ids=event_ids[:50],
                events=len(event_ids),
                error=repr(exc),
            )


def publish_events(
    payload: bytes | str | Sequence[Mapping[str, Any]] | Mapping[str, Any],
    *,
    settings: Settings | None = None,
) -> PublishResult:
    """Validate then publish one event or a batch (raw JSON or Python mappings).

    Raises ``InvalidEvent`` / ``InvalidBatch`` (nothing published), ``BrokerUnavailable`` or
    ``BacklogFull`` (its ``retry_after_s`` says when to try again).
    """
    settings = settings or get_settings()
    events = parse_payload(
        payload, max_event_bytes=settings.event_max_bytes, max_batch=settings.event_max_batch
    )
    publisher = Publisher(
        _redis_for(settings.redis_url),
        Keys(prefix=settings.key_prefix),
        default_sender(settings),
        dedupe_ttl_s=settings.event_dedupe_ttl_s,
        backlog=default_backlog(settings),
    )
    return publisher.publish(events)


def parse_payload(
    payload: bytes | str | Sequence[Mapping[str, Any]] | Mapping[str, Any],
    *,
    max_event_bytes: int,
    max_batch: int,
) -> list[CourseEvent]:
    """Validate what a Python producer passes exactly as the HTTP body would be validated.

    Bytes/str are JSON (an array is a batch); a mapping is one event and a sequence of mappings a
    batch, serialised with orjson first (so datetimes, UUIDs and the like become JSON strings).
    """
    limits: dict[str, int] = {"max_event_bytes": max_event_bytes, "max_batch": max_batch}
    if isinstance(payload, bytes | bytearray | memoryview | str):
        raw = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload
        return parse_batch(bytes(raw), content_type="application/json", **limits)
    if isinstance(payload, Mapping):
        body = _dumps(payload)
        if isinstance(body, str):
            raise InvalidEvent("invalid event", reasons=[body])
        return parse_batch(body, content_type="application/cloudevents+json", **limits)
    if isinstance(payload, Sequence):
        bodies = [_dumps(item) for item in payload]
        problems = [
            BatchProblem(index=i, reasons=[body])
            for i, body in enumerate(bodies)
            if isinstance(body, str)
        ]
        if problems:
            raise InvalidBatch(
                f"{len(problems)} of {len(bodies)} events are invalid",
                problems=problems,
                batch_size=len(bodies),
            )
        joined = b"[" + b",".join(b for b in bodies if isinstance(b, bytes)) + b"]"
        return parse_batch(joined, content_type="application/cloudevents-batch+json", **limits)
    raise InvalidEvent(
        "invalid event",
        reasons=[f"the payload must be JSON bytes, a mapping or a list, not {type(payload)}"],
    )


def _dumps(item: object) -> bytes | str:
    """The item as JSON bytes, or (as text) why it cannot be JSON."""
    if isinstance(item, Mapping) and not isinstance(item, dict):
        item = dict(item)
    try:
        return orjson.dumps(item)
    except TypeError as exc:
        return f"the event is not JSON-serialisable: {exc}"


@functools.lru_cache(maxsize=8)
def _redis_for(url: str) -> redis.Redis:
    """One client (and connection pool) per Redis URL for the process."""
    return redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=5.0)
