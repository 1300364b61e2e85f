"""The per-process near cache: bundles keyed by course and generation, plus answers cut from them.

An entry holds one course's stored bytes (as fetched), its lookup index, and every slice (unit,
lesson, resource, redirect answer) serialised once on first use with its own ETag. Swap notices
(``announce``) drop an entry at once and raise a per-course floor, so a load that read an older
generation while the notice arrived is served once but never cached. The cache itself is pure
memory; ``SwapListener`` at the bottom is the one I/O piece: a thread feeding notices in.

The cache is bounded in courses and in bytes. A course is accounted by what it holds: every
stored blob it fetched (JSON, and gzip/zstd once asked for), every slice it cut (body and gzip),
and an estimate of its decoded document and lookup index, ``DECODED_BYTES_PER_JSON_BYTE`` times
its JSON size. Past either cap the least recently used courses are evicted.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import redis

from core.bundle.index import BundleIndex
from core.bundle.store import BundleMeta, Encoding
from core.logging import get_logger

log = get_logger(__name__)

SLICE_GZIP_MIN_BYTES = 4096
GZIP_LEVEL = 6
SLICE_ETAG_BYTES = 16
# Decoded document + BundleIndex per JSON byte: tracemalloc measured 2.8-3.1 on 6 KB-800 KB bundles.
DECODED_BYTES_PER_JSON_BYTE = 3
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Slice:
    """One serialised answer: its JSON bytes, strong ETag and (when large) gzip bytes."""

    body: bytes
    etag: str
    gzip: bytes | None


def slice_etag(bundle_etag: str, key: tuple[str, ...]) -> str:
    """A strong ETag for a part of a bundle: a digest of the bundle's ETag and the part's key."""
    text = bundle_etag + "\x00" + "\x00".join(key)
    return '"' + hashlib.blake2b(text.encode(), digest_size=SLICE_ETAG_BYTES).hexdigest() + '"'


def make_slice(bundle_etag: str, key: tuple[str, ...], value: Any) -> Slice:
    """Serialise ``value`` once; gzip it too when it is large enough to be worth it."""
    body = orjson.dumps(value)
    packed = (
        gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
        if len(body) >= SLICE_GZIP_MIN_BYTES
        else None
    )
    return Slice(body, slice_etag(bundle_etag, key), packed)


def built_epoch(meta: BundleMeta) -> float:
    """When the bundle was built (epoch seconds); its store time if ``built_at`` is unreadable."""
    try:
        return datetime.fromisoformat(meta.built_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return meta.stored_at


class CachedBundle:
    """One course at one generation, and the answers already cut from it."""

    __slots__ = (
        "_account",
        "_blobs",
        "_lock",
        "_slices",
        "built_ts",
        "checked_at",
        "course_id",
        "generation",
        "index",
        "meta",
        "nbytes",
        "stale",
    )

    def __init__(
        self,
        meta: BundleMeta,
        json_bytes: bytes,
        index: BundleIndex,
        *,
        checked_at: float,
        stale: bool = False,
    ) -> None:
        self.meta = meta
        self.course_id = meta.course_id
        self.generation = meta.generation
        self.index = index
        self.stale = stale
        self.checked_at = checked_at
        self.built_ts = built_epoch(meta)
        self._blobs: dict[Encoding, bytes] = {"identity": json_bytes}
        self._slices: dict[tuple[str, ...], Slice] = {}
        self._lock = threading.Lock()
        # Bytes held (see the module docstring); changed under the owning cache's lock once cached.
        self.nbytes = len(json_bytes) * (1 + DECODED_BYTES_PER_JSON_BYTE)
        self._account: Callable[[CachedBundle, int], None] | None = None

    def blob(self, encoding: Encoding) -> bytes | None:
        """The whole bundle's stored bytes in ``encoding``, if already fetched."""
        return self._blobs.get(encoding)

    def keep_blob(self, encoding: Encoding, data: bytes) -> None:
        """Remember the stored bytes of another encoding (fetched on its first request)."""
        with self._lock:
            before = self._blobs.get(encoding)
            self._blobs[encoding] = data
        self._grew(len(data) - (len(before) if before is not None else 0))

    def cut(self, key: tuple[str, ...], make: Callable[[], Any | None]) -> Slice | None:
        """The slice named ``key``, serialised on first use; None (never cached) when absent."""
        found = self._slices.get(key)
        if found is not None:
            return found
        value = make()
        if value is None:
            return None
        made = make_slice(self.meta.etag, key, value)
        with self._lock:
            kept = self._slices.setdefault(key, made)
        if kept is made:
            self._grew(len(made.body) + (len(made.gzip) if made.gzip is not None else 0))
        return kept

    def _grew(self, delta: int) -> None:
        account = self._account
        if account is None:
            self.nbytes += delta
        else:
            account(self, delta)

    def unit(self, unit_slug: str) -> Slice | None:
        """The unit exactly as in the bundle."""
        return self.cut(("unit", unit_slug), lambda: self.index.unit(unit_slug))

    def lesson(self, unit_slug: str, lesson_slug: str) -> Slice | None:
        """The lesson as in the bundle, plus ``unitSlug``."""

        def make() -> dict[str, Any] | None:
            lesson = self.index.lesson(unit_slug, lesson_slug)
            return None if lesson is None else {**lesson, "unitSlug": unit_slug}

        return self.cut(("lesson", unit_slug, lesson_slug), make)

    def resource(self, resource_id: str) -> Slice | None:
        """The resource as in the bundle, plus ``unitSlug`` and ``lessonSlug`` (null: challenge)."""

        def make() -> dict[str, Any] | None:
            located = self.index.resource(resource_id)
            if located is None:
                return None
            return {
                **located.resource,
                "unitSlug": located.unit_slug,
                "lessonSlug": located.lesson_slug,
            }

        return self.cut(("resource", resource_id), make)

    def age_s(self, now_wall: float) -> float:
        """Seconds since the bundle was built."""
        return now_wall - self.built_ts


@dataclass(slots=True)
class NearCacheStats:
    """Counters the API exports; hits are counted on the event loop, the rest under a lock."""

    hits: int = 0
    misses: int = 0
    checks: int = 0
    checks_changed: int = 0
    notices: int = 0
    evictions: int = 0
    resets: int = 0
    not_cached: int = 0
    bytes: int = 0  # gauge: bytes the cached courses hold now (see the module docstring)


class _Expiring:
    """A small map whose values expire; cleared whole when it outgrows its bound."""

    __slots__ = ("_items", "_max")

    def __init__(self, max_items: int) -> None:
        self._items: dict[str, tuple[Any, float]] = {}
        self._max = max_items

    def get(self, key: str, now: float) -> Any | None:
        found = self._items.get(key)
        if found is None:
            return None
        if found[1] <= now:
            self._items.pop(key, None)
            return None
        return found[0]

    def put(self, key: str, value: Any, until: float) -> None:
        if len(self._items) >= self._max and key not in self._items:
            self._items.clear()
        self._items[key] = (value, until)

    def pop(self, key: str) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()


class NearCache:
    """LRU of ``CachedBundle`` by course (bounded in courses and bytes), with the reader's maps.

    Besides bundles: unknown courses (remembered briefly), slug -> course id, and aggregate
    answers (subject listings). Any swap notice clears the slug map and the aggregates, and
    drops the noticed course's bundle and "unknown" mark.
    """

    def __init__(self, max_courses: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_courses < 1:
            raise ValueError("max_courses must be at least 1")
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.max_courses = max_courses
        self.max_bytes = max_bytes
        self.stats = NearCacheStats()
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, CachedBundle] = OrderedDict()
        self._floors: OrderedDict[str, int] = OrderedDict()
        self._max_floors = max(1024, 4 * max_courses)
        aux = max(1024, 4 * max_courses)
        self._missing = _Expiring(aux)
        self._slugs = _Expiring(aux)
        self._aggregates = _Expiring(aux)

    # --- bundles ------------------------------------------------------------------------------
    def get(self, course_id: str) -> CachedBundle | None:
        """The cached bundle of the course (marked most recently used), or None."""
        entry = self._entries.get(course_id)
        if entry is not None:
            with self._lock:
                if course_id in self._entries:
                    self._entries.move_to_end(course_id)
        return entry

    def put(self, entry: CachedBundle) -> CachedBundle:
        """Cache ``entry`` and return what to serve: a cached same-or-newer generation wins.

        An entry below the course's announced floor is returned but not cached.
        """
        with self._lock:
            current = self._entries.get(entry.course_id)
            if current is not None and current.generation >= entry.generation:
                self._entries.move_to_end(entry.course_id)
                return current
            if entry.generation < self._floors.get(entry.course_id, 0):
                self.stats.not_cached += 1
                return entry
            if entry.nbytes > self.max_bytes:  # alone past the cap: served, never cached
                if current is not None:  # nor may the older generation keep being served
                    del self._entries[entry.course_id]
                    self._detach(current)
                self.stats.not_cached += 1
                return entry
            if current is not None:
                self._detach(current)
            self._entries[entry.course_id] = entry
            self._entries.move_to_end(entry.course_id)
            entry._account = self._grow
            self.stats.bytes += entry.nbytes
            self._evict(keep=entry.course_id)
            return entry

    @property
    def nbytes(self) -> int:
        """Bytes the cached courses hold now (what ``max_bytes`` bounds)."""
        return self.stats.bytes

    def _grow(self, entry: CachedBundle, delta: int) -> None:
        with self._lock:
            entry.nbytes += delta
            if self._entries.get(entry.course_id) is entry:
                self.stats.bytes += delta
                self._evict(keep=entry.course_id)

    def _evict(self, *, keep: str) -> None:
        """Evict least recently used courses (never ``keep``) until both caps hold. Lock held."""
        entries = self._entries
        while len(entries) > 1 and (
            len(entries) > self.max_courses or self.stats.bytes > self.max_bytes
        ):
            course_id = next(iter(entries))
            if course_id == keep:
                entries.move_to_end(course_id)
                continue
            self._detach(entries.pop(course_id))
            self.stats.evictions += 1

    def _detach(self, entry: CachedBundle) -> None:
        """Stop accounting ``entry`` (it has left, or is leaving, the cache). Lock held."""
        entry._account = None
        self.stats.bytes -= entry.nbytes

    def drop(self, course_id: str, *, older_than: int | None = None) -> bool:
        """Drop the course's bundle (only if its generation is below ``older_than``, when given)."""
        with self._lock:
            entry = self._entries.get(course_id)
            if entry is None or (older_than is not None and entry.generation >= older_than):
                return False
            del self._entries[course_id]
            self._detach(entry)
            return True

    def announce(self, course_id: str, generation: int, *, deleted: bool) -> None:
        """A swap notice: the course is now at ``generation`` (or deleted at it)."""
        with self._lock:
            self.stats.notices += 1
            if generation > self._floors.get(course_id, 0):
                self._floors[course_id] = generation
                self._floors.move_to_end(course_id)
                while len(self._floors) > self._max_floors:
                    self._floors.popitem(last=False)
            entry = self._entries.get(course_id)
            if entry is not None and (deleted or entry.generation < generation):
                del self._entries[course_id]
                self._detach(entry)
            self._missing.pop(course_id)
            self._slugs.clear()
            self._aggregates.clear()

    def clear(self) -> None:
        """Forget everything (after the notice channel was lost: notices may have been missed)."""
        with self._lock:
            self.stats.resets += 1
            for entry in self._entries.values():
                self._detach(entry)
            self._entries.clear()
            self._floors.clear()
            self._missing.clear()
            self._slugs.clear()
            self._aggregates.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, course_id: object) -> bool:
        return course_id in self._entries

    # --- small maps -----------------------------------------------------------------------------
    def is_missing(self, course_id: str, now: float) -> bool:
        """Whether the course was found unknown and that is still remembered."""
        return self._missing.get(course_id, now) is not None

    def remember_missing(self, course_id: str, until: float) -> None:
        """Remember until ``until`` (monotonic) that the course does not exist."""
        with self._lock:
            self._missing.put(course_id, True, until)

    def slug(self, slug: str, now: float) -> str | None:
        """The course id last seen for ``slug`` ("" when it was unknown), unless expired."""
        value = self._slugs.get(slug, now)
        return value if isinstance(value, str) else None

    def remember_slug(self, slug: str, course_id: str, until: float) -> None:
        """Remember ``slug`` -> ``course_id`` ("" for no such slug) until ``until``."""
        with self._lock:
            self._slugs.put(slug, course_id, until)

    def aggregate(self, key: str, now: float) -> Any | None:
        """A cached aggregate answer (e.g. a subject listing), unless expired."""
        return self._aggregates.get(key, now)

    def remember_aggregate(self, key: str, value: Any, until: float) -> None:
        """Cache an aggregate answer until ``until`` or the next swap notice."""
        with self._lock:
            self._aggregates.put(key, value, until)


# --- the notice feed -----------------------------------------------------------------------------
def parse_notice(raw: bytes | str) -> tuple[str, int, bool] | None:
    """``(courseId, generation, deleted)`` from a swap notice; None if it is not one."""
    try:
        doc = orjson.loads(raw)
        course_id, generation = doc["courseId"], doc["generation"]
        deleted = bool(doc.get("deleted", False))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(course_id, str) or isinstance(generation, bool):
        return None
    if not isinstance(generation, int):
        return None
    return course_id, generation, deleted


class SwapListener:
    """A daemon thread subscribed to the swap channel: each notice drops the course's entry.

    Whenever the subscription is (re)established the cache is cleared, since notices sent while
    unsubscribed are lost; the generation backstop covers the moments in between.
    """

    def __init__(
        self,
        connect: Callable[[], redis.Redis],
        channel: str,
        cache: NearCache,
        *,
        poll_s: float = 0.2,
        backoff_s: float = 0.2,
        backoff_max_s: float = 5.0,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._cache = cache
        self._poll_s = poll_s
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.subscribed = threading.Event()
        self.reconnects = 0
        self.notices = 0

    def start(self) -> None:
        """Start listening (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="swap-listener", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and wait for the thread (at most ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.subscribed.clear()

    def _run(self) -> None:
        delay = self._backoff_s
        while not self._stop.is_set():
            try:
                self._listen()
                delay = self._backoff_s
            except (redis.RedisError, OSError) as exc:
                self.subscribed.clear()
                self.reconnects += 1
                log.warning(
                    "swap notices lost; reconnecting",
                    channel=self._channel,
                    outcome="reconnect",
                    error=repr(exc),
                    retry_in_s=round(delay, 2),
                )
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff_max_s)

    def _listen(self) -> None:
        client = self._connect()
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(self._channel)
            while not self._stop.is_set():
                msg = pubsub.get_message(timeout=self._poll_s)
                if msg is None:
                    continue
                if msg["type"] == "subscribe":
                    # From here on no notice is missed; anything before may have been.
                    self._cache.clear()
                    self.subscribed.set()
                elif msg["type"] == "message":
                    self._on_message(msg["data"])
        finally:
            pubsub.close()

    def _on_message(self, data: bytes | str) -> None:
        notice = parse_notice(data)
        if notice is None:
            log.warning("unreadable swap notice ignored", channel=self._channel)
            return
        course_id, generation, deleted = notice
        self.notices += 1
        self._cache.announce(course_id, generation, deleted=deleted)
