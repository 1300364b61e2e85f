"""The near cache: bounded LRU by course, generation floors from notices, slices cut once."""

from __future__ import annotations

import gzip
import threading
import time
from typing import Any

import fakeredis
import orjson
import pytest
import redis

from core.bundle.codec import encode_bundle
from core.bundle.index import BundleIndex
from core.bundle.model import BundleDoc
from core.bundle.nearcache import (
    SLICE_GZIP_MIN_BYTES,
    CachedBundle,
    NearCache,
    SwapListener,
    parse_notice,
)
from core.bundle.store import BundleMeta
from tests.core.bundle.records import Catalog, build, course


def _doc(course_id: str = "course-1", generation: int = 1, lessons: int = 1) -> BundleDoc:
    cat = Catalog(course=course(course_id))
    unit = cat.unit(f"{course_id}-u", slug="u", course_id=course_id)
    for n in range(lessons):
        lesson = cat.lesson(f"{course_id}-l{n}", unit, slug=f"l{n}", course_id=course_id)
        cat.item(lesson, f"{course_id}-r{n}", "Video", slug=f"v{n}", xp=1)
    return build(cat.records(), generation=generation).doc


def entry(course_id: str = "course-1", generation: int = 1, **kwargs: Any) -> CachedBundle:
    doc = _doc(course_id, generation, **kwargs)
    encoded = encode_bundle(doc)
    meta = BundleMeta(
        course_id=course_id,
        generation=generation,
        built_at=doc["builtAt"],
        slug=doc["course"]["slug"],
        subject=doc["course"]["subject"],
        title=doc["course"]["title"],
        raw_size=len(encoded.json),
        gzip_size=len(encoded.gzip),
        zstd_size=len(encoded.zstd),
        etag=encoded.etag,
        skipped=0,
        upstream_requests=0,
        source_modified=None,
        totals=dict(doc["totals"]),
        stored_at=0.0,
    )
    return CachedBundle(meta, encoded.json, BundleIndex.from_doc(doc), checked_at=0.0)


def test_lru_keeps_the_most_recently_used_courses() -> None:
    cache = NearCache(2)
    cache.put(entry("a"))
    cache.put(entry("b"))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put(entry("c"))
    assert "b" not in cache
    assert {"a", "c"} <= {k for k in ("a", "b", "c") if k in cache}
    assert cache.stats.evictions == 1


def test_same_or_newer_cached_generation_wins_a_put() -> None:
    cache = NearCache(4)
    newer = cache.put(entry(generation=3))
    assert cache.put(entry(generation=2)) is newer
    assert cache.put(entry(generation=3)) is newer
    assert cache.put(entry(generation=4)).generation == 4


def test_a_notice_drops_older_generations_only() -> None:
    cache = NearCache(4)
    cache.put(entry(generation=2))
    cache.announce("course-1", 2, deleted=False)
    assert "course-1" in cache
    cache.announce("course-1", 3, deleted=False)
    assert "course-1" not in cache


def test_a_delete_notice_drops_the_course() -> None:
    cache = NearCache(4)
    cache.put(entry(generation=2))
    cache.announce("course-1", 2, deleted=True)
    assert cache.get("course-1") is None


def test_a_load_older_than_a_notice_is_served_but_not_cached() -> None:
    cache = NearCache(4)
    cache.announce("course-1", 5, deleted=False)
    late = entry(generation=4)
    assert cache.put(late) is late
    assert "course-1" not in cache
    assert cache.stats.not_cached == 1


def test_clear_forgets_floors_and_small_maps() -> None:
    cache = NearCache(4)
    cache.put(entry())
    cache.announce("x", 9, deleted=False)
    cache.remember_missing("ghost", until=100.0)
    cache.remember_slug("algebra", "course-1", until=100.0)
    cache.clear()
    assert len(cache) == 0
    assert not cache.is_missing("ghost", now=1.0)
    assert cache.slug("algebra", now=1.0) is None
    assert cache.put(entry("x", generation=1)).generation == 1
    assert "x" in cache


def test_unknown_courses_are_remembered_until_expiry_or_a_notice() -> None:
    cache = NearCache(4)
    cache.remember_missing("ghost", until=10.0)
    assert cache.is_missing("ghost", now=9.9)
    assert not cache.is_missing("ghost", now=10.0)
    cache.remember_missing("ghost", until=10.0)
    cache.announce("ghost", 1, deleted=False)
    assert not cache.is_missing("ghost", now=1.0)


def test_any_notice_clears_slugs_and_aggregates() -> None:
    cache = NearCache(4)
    cache.remember_slug("algebra", "course-1", until=100.0)
    cache.remember_aggregate("subject\x00math", ["listing"], until=100.0)
    cache.announce("other-course", 1, deleted=False)
    assert cache.slug("algebra", now=1.0) is None
    assert cache.aggregate("subject\x00math", now=1.0) is None


def test_lesson_slice_is_serialised_once_with_its_unit_slug() -> None:
    cached = entry()
    first = cached.lesson("u", "l0")
    assert first is not None
    assert cached.lesson("u", "l0") is first
    lesson = cached.index.lesson("u", "l0")
    assert orjson.loads(first.body) == {**(lesson or {}), "unitSlug": "u"}


def test_slices_have_distinct_etags_that_follow_the_bundle() -> None:
    one, two = entry(lessons=2), entry(lessons=2, generation=2)
    a, b = one.lesson("u", "l0"), one.lesson("u", "l1")
    assert a is not None and b is not None and a.etag != b.etag
    unit = one.unit("u")
    assert unit is not None and unit.etag not in (a.etag, b.etag)
    # A rebuild changes builtAt/generation, so the bundle ETag and every slice ETag change.
    again = two.lesson("u", "l0")
    assert again is not None and again.etag != a.etag


def test_missing_parts_are_none_and_not_cached() -> None:
    cached = entry()
    assert cached.unit("nope") is None
    assert cached.lesson("u", "nope") is None
    assert cached.resource("nope") is None
    assert not cached._slices


def test_resource_slice_says_where_it_sits() -> None:
    cached = entry()
    piece = cached.resource("course-1-r0")
    assert piece is not None
    body = orjson.loads(piece.body)
    assert (body["unitSlug"], body["lessonSlug"], body["resourceId"]) == ("u", "l0", "course-1-r0")


def test_only_large_slices_are_gzipped() -> None:
    small = entry()
    big = entry(lessons=40)
    lesson, unit = small.lesson("u", "l0"), big.unit("u")
    assert lesson is not None and lesson.gzip is None
    assert unit is not None and len(unit.body) >= SLICE_GZIP_MIN_BYTES
    assert unit.gzip is not None and gzip.decompress(unit.gzip) == unit.body


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"courseId":"c","generation":3,"deleted":false}', ("c", 3, False)),
        (b'{"courseId":"c","generation":4,"deleted":true}', ("c", 4, True)),
        (b'{"courseId":"c","generation":"4"}', None),
        (b'{"courseId":1,"generation":4}', None),
        (b'{"generation":4}', None),
        (b"not json", None),
    ],
)
def test_parse_notice(raw: bytes, expected: Any) -> None:
    assert parse_notice(raw) == expected


def _wait(check: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


def test_listener_drops_a_course_on_its_notice() -> None:
    server = fakeredis.FakeServer()
    cache = NearCache(4)
    listener = SwapListener(lambda: fakeredis.FakeRedis(server=server), "swaps", cache, poll_s=0.02)
    listener.start()
    try:
        assert listener.subscribed.wait(5.0)
        cache.put(entry(generation=1))
        fakeredis.FakeRedis(server=server).publish(
            "swaps", orjson.dumps({"courseId": "course-1", "generation": 2, "deleted": False})
        )
        assert _wait(lambda: "course-1" not in cache)
        assert listener.notices == 1
    finally:
        listener.stop()


def test_listener_reconnects_and_clears_after_losing_the_channel() -> None:
    server = fakeredis.FakeServer()
    cache = NearCache(4)
    failures = {"left": 2}
    lock = threading.Lock()

    def connect() -> redis.Redis:
        with lock:
            if failures["left"] > 0:
                failures["left"] -= 1
                raise redis.ConnectionError("refused")
        return fakeredis.FakeRedis(server=server)

    listener = SwapListener(connect, "swaps", cache, poll_s=0.02, backoff_s=0.01)
    cache.put(entry())  # loaded while no notice could be received
    listener.start()
    try:
        assert listener.subscribed.wait(5.0)
        assert listener.reconnects == 2
        assert "course-1" not in cache
        assert cache.stats.resets >= 1
    finally:
        listener.stop()


# --- the byte bound ----------------------------------------------------------------------------
def test_the_cache_is_bounded_in_bytes_evicting_least_recently_used() -> None:
    one = entry("a", lessons=20).nbytes
    cache = NearCache(100, max_bytes=int(one * 2.5))  # room for two such courses, not three
    for name in ("a", "b", "c"):
        cache.put(entry(name, lessons=20))
        cache.get("a")  # a stays the most recently used
    assert "a" in cache and "c" in cache and "b" not in cache
    assert cache.nbytes <= cache.max_bytes
    assert cache.nbytes == cache.get("a").nbytes + cache.get("c").nbytes  # type: ignore[union-attr]


def test_bytes_count_blobs_and_slices_added_after_caching() -> None:
    cache = NearCache(10)
    cached = cache.put(entry("a", lessons=3))
    start = cache.nbytes
    assert start == cached.nbytes > len(cached.blob("identity") or b"")
    cached.keep_blob("gzip", b"x" * 1000)
    piece = cached.lesson("u", "l0")
    assert piece is not None
    assert cache.nbytes == start + 1000 + len(piece.body)
    cached.lesson("u", "l0")  # cut once: counted once
    assert cache.nbytes == start + 1000 + len(piece.body)


def test_growth_past_the_cap_evicts_other_courses() -> None:
    small = entry("a").nbytes
    cache = NearCache(10, max_bytes=small * 3)
    cache.put(entry("a"))
    grower = cache.put(entry("b"))
    grower.keep_blob("zstd", b"z" * small * 2)
    assert "a" not in cache and "b" in cache
    assert cache.nbytes == grower.nbytes


def test_a_course_larger_than_the_cap_is_served_but_not_cached() -> None:
    small = entry("a", generation=1)
    cache = NearCache(10, max_bytes=small.nbytes * 2)
    cache.put(small)
    big = entry("a", generation=2, lessons=40)
    assert cache.put(big) is big
    assert "a" not in cache  # nor is the older generation served from memory any longer
    assert cache.nbytes == 0


def test_dropped_notified_and_cleared_courses_release_their_bytes() -> None:
    cache = NearCache(10)
    cache.put(entry("a"))
    cache.put(entry("b"))
    cache.put(entry("c"))
    cache.drop("a")
    cache.announce("b", 5, deleted=False)
    assert cache.nbytes == cache.get("c").nbytes  # type: ignore[union-attr]
    cache.clear()
    assert cache.nbytes == 0
