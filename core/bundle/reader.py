"""The read service the API calls: near cache first, then the store, then a single-flight build.

Hot path (``peek``, ``cached_slug``, ``cached_subject``): memory only, no I/O. Everything else
(``load``, ``resolve_slug``, ``subject``, ``blob``) blocks on Redis and is called off the event
loop. A cached course is re-checked against the store's generation (one HMGET) at most once per
``check_s``, the backstop for a missed swap notice; a stale one goes through the read-through,
which refreshes it in the background. Pure of HTTP.

A damaged stored key (``BundleCorrupt`` from the store, or JSON that does not decode) is
reported once through ``corruption`` (log, counter, rebuild requested). A load then serves the
newest kept earlier generation that reads back whole, marked stale; with none kept the error is
re-raised, so the API answers 503 instead of serving the damage.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from core.bundle.codec import encode_bundle
from core.bundle.index import BundleIndex
from core.bundle.integrity import CorruptionReporter, RequestRebuild
from core.bundle.nearcache import CachedBundle, NearCache, Slice, built_epoch, make_slice
from core.bundle.redirects import AssessmentKind, resolve_assessment_redirect
from core.bundle.store import BundleMeta, BundleStore, Encoding, checked_doc
from core.errors import BundleCorrupt, CourseNotFound
from core.keys import Keys
from core.logging import get_logger
from core.pipeline.debounce import Debouncer
from core.singleflight.distributed import DistributedFlight, FlightLease
from core.singleflight.local import SingleFlight
from core.singleflight.readthrough import Cached, NegativeCache, ReadThrough

log = get_logger(__name__)

Build = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ReaderPolicy:
    """How long answers may be reused without asking Redis."""

    check_s: float = 2.0  # backstop: re-check a cached course's generation this often
    fresh_s: float = 3600.0  # older bundles are served stale and refreshed (<= 0: never stale)
    negative_ttl_s: float = 30.0  # "no such course / slug" is remembered this long
    listing_ttl_s: float = 2.0  # subject listings are reused this long (or to the next swap)


@dataclass(frozen=True, slots=True)
class Listing:
    """A subject's course listing, serialised, with the newest generation and build time in it."""

    slice: Slice
    generation: int | None
    built_at: str | None


class BundleReader:
    """Answers course reads from the near cache, the store, or one build across processes."""

    def __init__(
        self,
        store: BundleStore,
        cache: NearCache,
        *,
        keys: Keys,
        build: Build,
        flight: DistributedFlight,
        negative: NegativeCache,
        policy: ReaderPolicy | None = None,
        background: concurrent.futures.Executor | None = None,
        request_rebuild: RequestRebuild | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``request_rebuild`` defaults to the debouncer's dirty mark (reconcile rebuilds it)."""
        self.store = store
        self.cache = cache
        self.policy = policy or ReaderPolicy()
        self._build = build
        self._negative = negative
        self._clock = clock
        self._wall = wall
        self._loads: SingleFlight[CachedBundle] = SingleFlight(name="near-cache-load")
        self._stats_lock = threading.Lock()
        if request_rebuild is None:
            request_rebuild = _DirtyMark(Debouncer(store.client, keys))
        self.corruption = CorruptionReporter(request_rebuild, store.repair_index)
        self.source: ReadThrough[CachedBundle] = ReadThrough(
            read=self._read_store,
            build=self._build_course,
            flight=flight,
            negative=negative,
            not_found=CourseNotFound,
            background=background,
            flight_name=keys.bundle_flight_name,
        )

    # --- hot path: memory only ------------------------------------------------------------------
    def peek(self, course_id: str) -> CachedBundle | None:
        """The cached course if it may be served as is; None when the caller must ``load``.

        The first caller past the backstop interval gets None and does the check; every other
        caller keeps being served meanwhile. Raises CourseNotFound while "unknown" is remembered.
        """
        cache = self.cache
        entry = cache.get(course_id)
        now = self._clock()
        if entry is None:
            if cache.is_missing(course_id, now):
                raise CourseNotFound("course not found (remembered briefly)", course_id=course_id)
            return None
        if now - entry.checked_at >= self.policy.check_s:
            entry.checked_at = now
            return None
        cache.stats.hits += 1
        return entry

    def is_stale(self, entry: CachedBundle) -> bool:
        """Whether answers from ``entry`` carry ``X-Bundle-Stale: true``."""
        fresh_s = self.policy.fresh_s
        return entry.stale or (fresh_s > 0 and entry.age_s(self._wall()) > fresh_s)

    def cached_slug(self, slug: str) -> str | None:
        """The course id of ``slug`` if remembered; CourseNotFound if remembered unknown."""
        found = self.cache.slug(slug, self._clock())
        if found == "":
            raise CourseNotFound("no course has this slug (remembered briefly)", slug=slug)
        return found

    def cached_subject(self, subject: str) -> Listing | None:
        """The subject's listing if cached and not past ``listing_ttl_s`` or a swap."""
        found = self.cache.aggregate("subject\x00" + subject, self._clock())
        return found if isinstance(found, Listing) else None

    # --- blocking: call off the event loop --------------------------------------------------------
    def load(self, course_id: str) -> CachedBundle:
        """The course's bundle after a backstop check, a store read or a build (one per process)."""
        return self._loads.do(course_id, lambda: self._load(course_id))

    def get(self, course_id: str) -> CachedBundle:
        """``peek`` or else ``load`` (for callers that are already off the event loop)."""
        entry = self.peek(course_id)
        return entry if entry is not None else self.load(course_id)

    def is_cold(self, course_id: str) -> bool:
        """Whether reading the course now would build it (not cached, stored or known missing).

        One or two Redis reads; only asked after ``peek`` found nothing (the cold-build limit).
        """
        if self.cache.get(course_id) is not None or self.cache.is_missing(course_id, self._clock()):
            return False
        if self._negative.is_missing(course_id):
            return False
        return self.store.generation(course_id) is None

    def resolve_slug(self, slug: str) -> str:
        """The course id of ``slug`` (one HGET, remembered); CourseNotFound when none has it."""
        found = self.cached_slug(slug)
        if found is not None:
            return found
        with self._reporting():
            course_id = self.store.course_id_for_slug(slug)
        now = self._clock()
        if course_id is None:
            self.cache.remember_slug(slug, "", now + self.policy.negative_ttl_s)
            raise CourseNotFound("no course has this slug", slug=slug)
        self.cache.remember_slug(slug, course_id, now + self.policy.check_s)
        return course_id

    def blob(self, entry: CachedBundle, encoding: Encoding) -> tuple[CachedBundle, bytes]:
        """The whole bundle's stored bytes in ``encoding`` (fetched once per generation).

        Returns the entry the bytes belong to: a newer one if the course changed meanwhile.
        """
        for _ in range(3):
            data = entry.blob(encoding)
            if data is not None:
                return entry, data
            with self._reporting():
                found = self.store.read(entry.course_id, encoding)
            if found is not None and found[0].generation == entry.generation:
                entry.keep_blob(encoding, found[1])
                return entry, found[1]
            self.cache.drop(entry.course_id, older_than=entry.generation + 1)
            entry = self.load(entry.course_id)
        raise CourseNotFound("the course kept changing while read", course_id=entry.course_id)

    def subject(self, subject: str) -> Listing:
        """One summary per built course of ``subject``, ordered by slug (reused briefly)."""
        cached = self.cached_subject(subject)
        if cached is not None:
            return cached
        damaged: list[BundleCorrupt] = []
        with self._reporting():
            metas = self.store.metas(self.store.course_ids_for_subject(subject), damaged=damaged)
        for exc in damaged:  # left out of the listing; their rebuilds restore them
            self.corruption.report(exc)
        metas = sorted((m for m in metas if m.subject == subject), key=lambda m: m.slug)
        courses = [_summary(meta) for meta in metas]
        body = {"subject": subject, "courses": courses}
        newest = max(metas, key=lambda m: m.generation, default=None)
        latest = max((m.built_at for m in metas), default=None)
        listing = Listing(
            slice=make_slice("subject", ("subject", subject, _fingerprint(metas)), body),
            generation=newest.generation if newest is not None else None,
            built_at=latest,
        )
        until = self._clock() + self.policy.listing_ttl_s
        self.cache.remember_aggregate("subject\x00" + subject, listing, until)
        return listing

    # --- answers cut from a cached bundle (memory only) -------------------------------------
    @staticmethod
    def redirect(
        entry: CachedBundle,
        *,
        subject: str,
        course_slug: str,
        unit_slug: str | None,
        kind: AssessmentKind,
        slug: str,
    ) -> Slice:
        """``{"path": ...}`` for an assessment page; LookupMiss / AmbiguousRedirect otherwise."""

        def make() -> dict[str, str]:
            path = resolve_assessment_redirect(
                entry.index,
                subject=subject,
                course_slug=course_slug,
                unit_slug=unit_slug,
                kind=kind,
                slug=slug,
            )
            return {"path": path}

        key = ("redirect", subject, course_slug, unit_slug or "", kind, slug)
        found = entry.cut(key, make)
        assert found is not None  # make() raises rather than returning None
        return found

    # --- internals ------------------------------------------------------------------------------
    def _load(self, course_id: str) -> CachedBundle:
        stats = self.cache.stats
        entry = self.cache.get(course_id)
        if entry is not None and not self.is_stale(entry):
            with self._stats_lock:
                stats.checks += 1
            with self._reporting():
                generation = self.store.generation(course_id)
            if generation == entry.generation:
                entry.checked_at = self._clock()
                return entry
            with self._stats_lock:
                stats.checks_changed += 1
            log.info(
                "near cache behind the store",
                course_id=course_id,
                generation=generation,
                cached_generation=entry.generation,
                outcome="backstop_refresh",
            )
        with self._stats_lock:
            stats.misses += 1
        try:
            result = self.source.get(course_id)
        except CourseNotFound:
            self.cache.remember_missing(course_id, self._clock() + self.policy.negative_ttl_s)
            raise
        served = result.value
        served.stale = result.stale
        served.checked_at = self._clock()
        return served

    @contextmanager
    def _reporting(self) -> Iterator[None]:
        try:
            yield
        except BundleCorrupt as exc:
            self.corruption.report(exc)
            raise

    def _read_store(self, course_id: str) -> Cached[CachedBundle] | None:
        try:
            with self._reporting():
                return self._read_store_checked(course_id)
        except BundleCorrupt:
            last_good = self._last_good(course_id)
            if last_good is None:
                raise
            # Served stale (X-Bundle-Stale), which also refreshes it in the background; the
            # rebuild the report asked for replaces the damaged key.
            return Cached(self.cache.put(last_good), True)

    def _last_good(self, course_id: str) -> CachedBundle | None:
        """The newest kept earlier generation that reads back whole, as a cache entry."""
        try:
            kept = self.store.kept(course_id)
        except redis.RedisError:
            return None
        for generation in kept:
            try:
                doc = self.store.kept_doc(course_id, generation.generation)
                if doc is None:
                    continue
                index = BundleIndex.from_doc(doc)
            except BundleCorrupt as exc:
                self.corruption.report(exc)
                continue
            except (redis.RedisError, KeyError, TypeError, ValueError, AttributeError):
                continue
            encoded = encode_bundle(doc)
            course = doc["course"]
            meta = BundleMeta(
                course_id=course_id,
                generation=generation.generation,
                built_at=generation.built_at,
                slug=str(course["slug"]),
                subject=str(course["subject"]),
                title=str(course["title"]),
                raw_size=len(encoded.json),
                gzip_size=len(encoded.gzip),
                zstd_size=len(encoded.zstd),
                etag=generation.etag,
                skipped=int(doc.get("skipped", 0)),
                upstream_requests=0,
                source_modified=None,
                totals=dict(generation.totals),
                stored_at=generation.stored_at,
            )
            entry = CachedBundle(meta, encoded.json, index, checked_at=self._clock(), stale=True)
            entry.keep_blob("gzip", encoded.gzip)
            entry.keep_blob("zstd", encoded.zstd)
            log.warning(
                "bundle_served_last_good",
                course_id=course_id,
                generation=generation.generation,
                outcome="stale",
            )
            return entry
        return None

    def _read_store_checked(self, course_id: str) -> Cached[CachedBundle] | None:
        """The stored bundle as a cache entry, reusing the cached one when generations agree."""
        entry = self.cache.get(course_id)
        if entry is not None:
            meta = self.store.meta(course_id)
            if meta is None:
                return None
            if meta.generation == entry.generation:
                return Cached(entry, self._aged(meta))
        found = self.store.read(course_id, "identity")
        if found is None:
            return None
        meta, raw = found
        key = self.store.key_of(course_id)
        doc = checked_doc(course_id, meta, raw, key=key)
        try:
            index = BundleIndex.from_doc(doc)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BundleCorrupt(
                "stored bundle is not a bundle document",
                course_id=course_id,
                key=key,
                reason="undecodable",
                generation=meta.generation,
                cause=repr(exc),
            ) from exc
        fresh = CachedBundle(meta, raw, index, checked_at=self._clock())
        return Cached(self.cache.put(fresh), self._aged(meta))

    def _build_course(self, course_id: str, lease: FlightLease) -> None:
        del lease  # the store's fencing, not the lease, keeps a late build from winning
        if self._negative.is_missing(course_id):
            # Found unknown by another process after our first look: do not ask upstream again.
            raise CourseNotFound("course not found (remembered briefly)", course_id=course_id)
        try:
            self._build(course_id)
        except Exception:
            self._forget_fence(course_id)
            raise

    def _forget_fence(self, course_id: str) -> None:
        """After a failed build, drop the fence of a course never stored (nothing to protect).

        Otherwise every id probed during an OneRoster outage would leave a key with no TTL.
        """
        try:
            self.store.discard_fence(course_id)
        except redis.RedisError as exc:
            log.warning("fence not dropped", course_id=course_id, error=repr(exc))

    def _aged(self, meta: BundleMeta) -> bool:
        fresh_s = self.policy.fresh_s
        return fresh_s > 0 and self._wall() - built_epoch(meta) > fresh_s


class _DirtyMark:
    """The default ``RequestRebuild``: the debouncer's dirty mark, which reconcile requeues."""

    def __init__(self, debouncer: Debouncer) -> None:
        self._debouncer = debouncer

    def __call__(self, course_id: str) -> None:
        self._debouncer.note_dirty(course_id)


def _summary(meta: BundleMeta) -> dict[str, Any]:
    return {
        "courseId": meta.course_id,
        "slug": meta.slug,
        "title": meta.title,
        "generation": meta.generation,
        "totals": dict(meta.totals),
    }


def _fingerprint(metas: list[BundleMeta]) -> str:
    return ",".join(f"{m.course_id}:{m.generation}" for m in metas)
