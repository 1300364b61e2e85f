"""The dead-letter store: what could not be handled, kept with its reason for an operator.

Entries live in one hash (id -> entry JSON) ordered by a sorted set of arrival times; the
oldest are dropped beyond ``max_entries``. Payloads are kept as text, or base64 when they are not
UTF-8, and cut at ``max_payload_bytes`` so a flood of huge bodies cannot fill Redis.
"""

from __future__ import annotations

import base64
import builtins
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal, cast

import orjson
import redis

from core.errors import EventError, InvalidEvent
from core.events.publisher import Publisher, PublishResult
from core.events.validate import MAX_BATCH, MAX_EVENT_BYTES, parse_batch
from core.keys import Keys
from core.logging import get_logger
from core.redaction import redact, redact_value

DeadLetterSource = Literal["http", "publisher", "worker", "task", "broker"]
PayloadEncoding = Literal["text", "base64"]

MAX_REASON_CHARS: Final = 4000

log = get_logger(__name__)


class DeadLetterNotFound(EventError):
    """No dead letter has this id (already replayed, removed or trimmed)."""


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered payload with why it failed and where it came from."""

    id: str
    reason: str
    payload: str
    received_at: float
    source: str
    context: dict[str, Any]
    attempts: int
    payload_encoding: PayloadEncoding = "text"
    truncated: bool = False

    def payload_bytes(self) -> bytes:
        """The payload as it arrived (up to the cut, if ``truncated``)."""
        if self.payload_encoding == "base64":
            return base64.b64decode(self.payload)
        return self.payload.encode("utf-8", "surrogatepass")

    def as_dict(self) -> dict[str, Any]:
        """The entry as JSON-able fields (for the API and the CLI)."""
        return asdict(self)


class DeadLetters:
    """Add, list, inspect, remove and replay dead letters (Redis hash + arrival-ordered zset)."""

    def __init__(
        self,
        redis: redis.Redis,
        keys: Keys,
        *,
        max_entries: int = 100_000,
        max_payload_bytes: int = 256 * 1024,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._redis = redis
        self._hash = keys.dlq()
        self._order = keys.dlq_order()
        self._max_entries = max_entries
        self._max_payload_bytes = max_payload_bytes
        self._clock = clock or time.time

    def add(
        self,
        *,
        reason: str,
        payload: bytes | str | Mapping[str, Any],
        source: DeadLetterSource,
        context: Mapping[str, Any] | None = None,
        attempts: int = 1,
    ) -> str:
        """Store a dead letter and return its id; trims the oldest beyond ``max_entries``.

        ``attempts`` is how many times handling was tried before giving up (1 by default).
        """
        text, encoding, truncated = encode_payload(payload, self._max_payload_bytes)
        entry = DeadLetter(
            id=uuid.uuid4().hex,
            reason=_clean_reason(redact(reason)),
            payload=text,
            received_at=self._clock(),
            source=source,
            context=redact_value(_plain(context or {})),
            attempts=attempts,
            payload_encoding=encoding,
            truncated=truncated,
        )
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self._hash, entry.id, orjson.dumps(entry.as_dict()).decode())
        pipe.zadd(self._order, {entry.id: entry.received_at})
        pipe.zcard(self._order)
        size = int(pipe.execute()[-1])
        if size > self._max_entries:
            self._trim(size - self._max_entries)
        log.warning(
            "events.dead_lettered",
            dead_letter_id=entry.id,
            source=source,
            reason=entry.reason[:300],
            event_id=entry.context.get("event_id"),
            truncated=truncated,
        )
        return entry.id

    def list(self, *, limit: int = 100, offset: int = 0) -> builtins.list[DeadLetter]:
        """Entries oldest first, ``limit`` of them after skipping ``offset``."""
        if limit <= 0:
            return []
        start = max(offset, 0)
        ids = cast(
            "builtins.list[bytes]", self._redis.zrange(self._order, start, start + limit - 1)
        )
        if not ids:
            return []
        blobs = cast("builtins.list[bytes | None]", self._redis.hmget(self._hash, ids))
        letters = (_decode(blob) for blob in blobs)
        return [letter for letter in letters if letter is not None]

    def get(self, dl_id: str) -> DeadLetter | None:
        """One entry, or None when there is none with this id."""
        return _decode(cast("bytes | None", self._redis.hget(self._hash, dl_id)))

    def remove(self, dl_id: str) -> bool:
        """Delete one entry; False when there was none."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.hdel(self._hash, dl_id)
        pipe.zrem(self._order, dl_id)
        removed, _ = pipe.execute()
        return bool(removed)

    def purge(self) -> int:
        """Delete every entry; returns how many there were."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.hlen(self._hash)
        pipe.delete(self._hash, self._order)
        count, _ = pipe.execute()
        return int(count)

    def count(self) -> int:
        """How many entries are stored."""
        return cast(int, self._redis.hlen(self._hash))

    def replay(
        self,
        dl_id: str,
        publisher: Publisher,
        *,
        max_event_bytes: int = MAX_EVENT_BYTES,
        max_batch: int = MAX_BATCH,
    ) -> PublishResult:
        """Re-validate and publish an entry's payload, then remove the entry.

        An id already seen within the dedupe window counts as a duplicate (and the entry is
        removed: the event was accepted once). Still invalid: ``InvalidEvent``, entry kept.
        Broker down: ``BrokerUnavailable``, entry kept.
        """
        letter = self.get(dl_id)
        if letter is None:
            raise DeadLetterNotFound("no dead letter with this id", dead_letter_id=dl_id)
        if letter.truncated:
            raise InvalidEvent(
                "dead letter cannot be replayed",
                reasons=["the stored payload was cut short; it cannot be replayed"],
                dead_letter_id=dl_id,
            )
        events = parse_batch(
            letter.payload_bytes(),
            content_type="application/json",
            max_event_bytes=max_event_bytes,
            max_batch=max_batch,
        )
        result = publisher.publish(events)
        self.remove(dl_id)
        log.info(
            "events.dead_letter_replayed",
            dead_letter_id=dl_id,
            accepted=result.accepted,
            duplicates=result.duplicates,
            outcome="replayed",
        )
        return result

    def _trim(self, excess: int) -> None:
        found = cast("builtins.list[bytes | str]", self._redis.zrange(self._order, 0, excess - 1))
        oldest = [m.decode() if isinstance(m, bytes) else m for m in found]
        if oldest:
            pipe = self._redis.pipeline(transaction=True)
            pipe.zrem(self._order, *oldest)
            pipe.hdel(self._hash, *oldest)
            pipe.execute()


def encode_payload(
    payload: bytes | str | Mapping[str, Any], max_bytes: int
) -> tuple[str, PayloadEncoding, bool]:
    """The payload as stored: text (or base64 if not UTF-8), cut at ``max_bytes``; never raises."""
    if isinstance(payload, str):
        raw = payload.encode("utf-8", "surrogatepass")
    elif isinstance(payload, bytes | bytearray | memoryview):
        raw = bytes(payload)
    else:
        raw = _json_or_repr(payload)
    truncated = len(raw) > max_bytes
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        cut = raw[:max_bytes] if truncated else raw
        return base64.b64encode(cut).decode("ascii"), "base64", truncated
    if truncated:
        text = raw[:max_bytes].decode("utf-8", "ignore")  # drops only a split final character
    return text, "text", truncated


def _json_or_repr(value: object) -> bytes:
    if isinstance(value, Mapping) and not isinstance(value, dict):
        value = dict(value)
    try:
        return orjson.dumps(value, default=repr, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        pass
    try:
        return repr(value).encode("utf-8", "surrogatepass")
    except RecursionError:
        return f"<{type(value).__name__} that cannot be shown>".encode()


def _clean_reason(reason: str) -> str:
    text = reason.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "…"


def _plain(context: Mapping[str, Any]) -> dict[str, Any]:
    """Context as plain JSON (anything else becomes its repr), so storing it cannot fail."""
    try:
        blob = orjson.dumps(dict(context), default=repr, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, RecursionError):
        return {"unserialisable_context": _json_or_repr(context).decode("utf-8", "replace")}
    loaded: dict[str, Any] = orjson.loads(blob)
    return loaded


def _decode(blob: bytes | str | None) -> DeadLetter | None:
    if blob is None:
        return None
    try:
        fields = orjson.loads(blob)
        return DeadLetter(
            id=str(fields["id"]),
            reason=str(fields["reason"]),
            payload=str(fields["payload"]),
            received_at=float(fields["received_at"]),
            source=str(fields["source"]),
            context=dict(fields.get("context") or {}),
            attempts=int(fields.get("attempts", 1)),
            payload_encoding="base64" if fields.get("payload_encoding") == "base64" else "text",
            truncated=bool(fields.get("truncated", False)),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        log.error("events.dead_letter_unreadable", error=repr(exc))
        return None
