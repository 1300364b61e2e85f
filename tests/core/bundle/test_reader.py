"""The read service: near cache, backstop check, read-through build, stale and unknown courses."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import orjson
import pytest

from core.bundle.builder import build_bundle
from core.bundle.codec import encode_bundle
from core.bundle.nearcache import NearCache
from core.bundle.reader import BundleReader, ReaderPolicy
from core.bundle.store import BundleStore, Encoding
from core.errors import (
    AmbiguousRedirect,
    BundleCorrupt,
    CourseNotFound,
    LookupMiss,
    OneRosterUnavailable,
)
from core.keys import Keys
from core.oneroster.models import CourseRecords
from core.pipeline.debounce import Debouncer
from core.singleflight.distributed import DistributedFlight
from core.singleflight.readthrough import NegativeCache
from tests.core.bundle.records import Catalog, course


def records(course_id: str = "course-1", *, slug: str = "algebra", subject: str = "math") -> Any:
    cat = Catalog(course=course(course_id, slug=slug, subject=subject))
    unit = cat.unit(f"{course_id}-u0", slug="u0", course_id=course_id)
    for le in range(2):
        lesson = cat.lesson(f"{course_id}-l{le}", unit, slug=f"l{le}", course_id=course_id)
        cat.item(lesson, f"{course_id}-r{le}", "Video", slug=f"v{le}", xp=1)
        cat.item(lesson, f"{course_id}-q{le}", "Quiz", slug="quiz", sort=9)
    return cat.records()


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Upstream:
    """What a rebuild would read: known courses, an outage switch, a count of builds."""

    store: BundleStore
    courses: dict[str, CourseRecords] = field(default_factory=dict)
    builds: Counter[str] = field(default_factory=Counter)
    down: bool = False
    delay_s: float = 0.0
    built_at: dt.datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def build(self, course_id: str) -> None:
        with self.lock:
            self.builds[course_id] += 1
        time.sleep(self.delay_s)
        if self.down:
            raise OneRosterUnavailable("simulated outage", course_id=course_id)
        recs = self.courses.get(course_id)
        if recs is None:
            raise CourseNotFound("gone upstream", course_id=course_id)
        self.write(recs)

    def write(self, recs: CourseRecords, *, built_at: dt.datetime | None = None) -> int:
        generation = self.store.next_generation(recs.course.sourcedId)
        when = built_at or self.built_at or dt.datetime.now(dt.UTC)
        doc = build_bundle(recs, generation=generation, built_at=when).doc
        assert self.store.write(doc["courseId"], doc, encode_bundle(doc)).stored
        return generation


class CountingStore(BundleStore):
    """The real store, counting the calls the reader makes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: Counter[str] = Counter()

    def generation(self, course_id: str) -> int | None:
        self.calls["generation"] += 1
        return super().generation(course_id)

    def read(self, course_id: str, encoding: Any = "identity") -> Any:
        self.calls[f"read:{encoding}"] += 1
        return super().read(course_id, encoding)

    def meta(self, course_id: str) -> Any:
        self.calls["meta"] += 1
        return super().meta(course_id)

    def course_id_for_slug(self, slug: str) -> str | None:
        self.calls["slug"] += 1
        return super().course_id_for_slug(slug)


@dataclass
class Harness:
    reader: BundleReader
    store: CountingStore
    upstream: Upstream
    clock: Clock
    cache: NearCache
    redis: fakeredis.FakeRedis
    keys: Keys


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def make(server: fakeredis.FakeServer, keys: Keys) -> Any:
    pools: list[concurrent.futures.ThreadPoolExecutor] = []

    def make(upstream: Upstream | None = None, **policy: Any) -> Harness:
        client = fakeredis.FakeRedis(server=server)
        store = CountingStore(client, keys)
        upstream = upstream or Upstream(store)
        clock = Clock()
        cache = NearCache(8)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        pools.append(pool)
        values = {"check_s": 2.0, "fresh_s": 3600.0, "negative_ttl_s": 30.0, "listing_ttl_s": 2.0}
        values.update(policy)
        reader = BundleReader(
            store,
            cache,
            keys=keys,
            build=upstream.build,
            flight=DistributedFlight(client, keys, lease_ms=2000, heartbeat_ms=500, wait_s=5.0),
            negative=NegativeCache(client, keys.missing, ttl_ms=30_000),
            policy=ReaderPolicy(**values),
            background=pool,
            clock=clock,
        )
        return Harness(reader, store, upstream, clock, cache, client, keys)

    yield make
    for pool in pools:
        pool.shutdown(wait=True)


def test_a_hit_does_no_redis_io(make: Any) -> None:
    h = make()
    h.upstream.write(records())
    loaded = h.reader.load("course-1")
    before = sum(h.store.calls.values())
    for _ in range(100):
        assert h.reader.peek("course-1") is loaded
    assert sum(h.store.calls.values()) == before
    assert h.cache.stats.hits == 100


def test_the_backstop_checks_the_generation_once_per_interval(make: Any) -> None:
    h = make(check_s=2.0)
    h.upstream.write(records())
    loaded = h.reader.load("course-1")
    h.clock.now += 2.0
    assert h.reader.peek("course-1") is None  # this caller checks ...
    assert h.reader.peek("course-1") is loaded  # ... everyone else is served meanwhile
    assert h.reader.load("course-1") is loaded
    assert h.store.calls["generation"] == 1
    assert h.reader.peek("course-1") is loaded


def test_the_backstop_catches_a_missed_notice(make: Any) -> None:
    h = make(check_s=2.0)
    recs = records()
    h.upstream.write(recs)
    first = h.reader.load("course-1")
    h.upstream.write(recs)  # a swap whose notice never arrived
    h.clock.now += 1.0
    assert h.reader.get("course-1") is first
    h.clock.now += 1.0
    assert h.reader.get("course-1").generation == first.generation + 1
    assert h.cache.stats.checks_changed == 1


def test_a_notice_makes_the_next_read_load_the_new_generation(make: Any) -> None:
    h = make()
    recs = records()
    h.upstream.write(recs)
    h.reader.load("course-1")
    generation = h.upstream.write(recs)
    h.cache.announce("course-1", generation, deleted=False)
    assert h.reader.peek("course-1") is None
    assert h.reader.load("course-1").generation == generation


def test_never_built_course_is_built_once_across_processes(make: Any) -> None:
    one = make()
    two = make(upstream=one.upstream)  # another process: own near cache; same Redis, OneRoster
    one.upstream.courses["course-1"] = records()
    one.upstream.delay_s = 0.2
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        loads = [pool.submit(r.load, "course-1") for r in (one.reader, two.reader) * 4]
        generations = {f.result().generation for f in loads}
    assert generations == {one.store.generation("course-1")}  # one build, one generation
    assert one.upstream.builds["course-1"] == 1


def test_unknown_course_is_remembered_then_asked_again(make: Any) -> None:
    h = make(negative_ttl_s=30.0)
    with pytest.raises(CourseNotFound):
        h.reader.load("ghost")
    calls = sum(h.store.calls.values())
    with pytest.raises(CourseNotFound):
        h.reader.peek("ghost")  # from memory, no Redis
    assert sum(h.store.calls.values()) == calls
    h.clock.now += 31.0
    assert h.reader.peek("ghost") is None
    assert h.upstream.builds["ghost"] == 1


def test_an_old_bundle_is_served_stale_and_refreshed(make: Any) -> None:
    h = make(fresh_s=60.0)
    h.upstream.courses["course-1"] = records()
    h.upstream.write(
        h.upstream.courses["course-1"], built_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    )
    first = h.reader.load("course-1")
    assert h.reader.is_stale(first)
    deadline = time.monotonic() + 5
    while h.store.generation("course-1") == first.generation and time.monotonic() < deadline:
        time.sleep(0.01)
    h.cache.announce("course-1", first.generation + 1, deleted=False)
    fresh = h.reader.get("course-1")
    assert fresh.generation == first.generation + 1
    assert not h.reader.is_stale(fresh)


def test_oneroster_down_serves_the_old_bundle_stale(make: Any) -> None:
    h = make(fresh_s=60.0)
    h.upstream.write(records(), built_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    h.upstream.down = True
    served = h.reader.load("course-1")
    assert h.reader.is_stale(served)
    assert served.lesson("u0", "l0") is not None


def test_other_encodings_are_fetched_once_per_generation(make: Any) -> None:
    h = make()
    h.upstream.write(records())
    loaded = h.reader.load("course-1")
    _, data = h.reader.blob(loaded, "gzip")
    _, again = h.reader.blob(loaded, "gzip")
    assert data == again == h.store.read("course-1", "gzip")[1]  # type: ignore[index]
    assert h.store.calls["read:gzip"] == 2  # the reader's one fetch plus this assertion's


def test_slugs_are_resolved_once_and_unknown_ones_remembered(make: Any) -> None:
    h = make()
    h.upstream.write(records())
    assert h.reader.resolve_slug("algebra") == "course-1"
    assert h.reader.cached_slug("algebra") == "course-1"
    with pytest.raises(CourseNotFound):
        h.reader.resolve_slug("nope")
    with pytest.raises(CourseNotFound):
        h.reader.cached_slug("nope")
    assert h.store.calls["slug"] == 2


def test_subject_listing_is_sorted_and_reused_until_a_swap(make: Any) -> None:
    h = make()
    h.upstream.write(records("c2", slug="zeta"))
    h.upstream.write(records("c1", slug="alpha"))
    listing = h.reader.subject("math")
    body = orjson.loads(listing.slice.body)
    assert [c["slug"] for c in body["courses"]] == ["alpha", "zeta"]
    assert h.reader.cached_subject("math") is listing
    h.cache.announce("c3", 1, deleted=False)
    assert h.reader.cached_subject("math") is None


def test_redirects_resolve_from_the_cached_bundle(make: Any) -> None:
    h = make()
    h.upstream.write(records())
    loaded = h.reader.load("course-1")
    with pytest.raises(AmbiguousRedirect) as ambiguous:
        h.reader.redirect(
            loaded, subject="math", course_slug="algebra", unit_slug="u0", kind="quiz", slug="quiz"
        )
    assert len(ambiguous.value.candidates) == 2
    with pytest.raises(LookupMiss):
        h.reader.redirect(
            loaded, subject="math", course_slug="algebra", unit_slug="u0", kind="quiz", slug="x"
        )


# --- damaged stored data ---------------------------------------------------------------------
def _garble(h: Harness, course_id: str, field: str) -> None:
    client, key = h.redis, h.keys.bundle(course_id)
    good = client.hget(key, field)
    assert isinstance(good, bytes)
    client.hset(key, field, good[: len(good) // 2])


def test_a_damaged_bundle_is_refused_reported_once_and_marked_for_rebuild(make: Any) -> None:
    asked: list[str] = []
    h = make()
    h.reader = BundleReader(
        h.store,
        h.cache,
        keys=h.reader.source.flight.keys,
        build=h.upstream.build,
        flight=h.reader.source.flight,
        negative=h.reader.source.negative,
        request_rebuild=asked.append,
    )
    h.upstream.write(records())
    _garble(h, "course-1", "json")
    reports = h.reader.corruption.stats.reports
    for _ in range(3):
        with pytest.raises(BundleCorrupt):
            h.reader.load("course-1")
    assert asked == ["course-1"]
    assert h.reader.corruption.stats.reports == reports + 1
    assert "course-1" not in h.cache


def test_by_default_a_damaged_course_is_marked_dirty(make: Any, keys: Keys) -> None:
    h = make()
    h.upstream.write(records())
    _garble(h, "course-1", "json")
    with pytest.raises(BundleCorrupt):
        h.reader.load("course-1")
    assert Debouncer(h.redis, keys).is_dirty("course-1")


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_damaged_compressed_bytes_are_never_handed_out(make: Any, encoding: Encoding) -> None:
    h = make()
    h.upstream.write(records())
    entry = h.reader.load("course-1")
    _garble(h, "course-1", encoding)
    with pytest.raises(BundleCorrupt):
        h.reader.blob(entry, encoding)
    assert entry.blob(encoding) is None


def test_a_bundle_key_of_the_wrong_type_fails_the_backstop_check(make: Any) -> None:
    h = make()
    h.upstream.write(records())
    h.reader.load("course-1")
    key = h.keys.bundle("course-1")
    h.redis.delete(key)
    h.redis.set(key, b"not a hash")
    h.clock.now += 5  # past check_s: the next read asks Redis
    assert h.reader.peek("course-1") is None
    with pytest.raises(BundleCorrupt):
        h.reader.load("course-1")


def test_a_damaged_slug_index_is_refused_then_rebuilt_from_the_course_records(
    make: Any, keys: Keys
) -> None:
    h = make()
    h.upstream.write(records(slug="algebra"))
    h.redis.delete(keys.slug_index())
    h.redis.set(keys.slug_index(), b"garbage")
    with pytest.raises(BundleCorrupt):
        h.reader.resolve_slug("algebra")
    assert h.reader.resolve_slug("algebra") == "course-1"


def test_a_damaged_course_is_left_out_of_its_subject_listing(make: Any, keys: Keys) -> None:
    h = make()
    h.upstream.write(records("c1", slug="alpha"))
    h.upstream.write(records("c2", slug="beta"))
    h.redis.hset(h.keys.bundle("c2"), "generation", "bogus")
    listing = h.reader.subject("math")
    assert [c["courseId"] for c in orjson.loads(listing.slice.body)["courses"]] == ["c1"]
    assert Debouncer(h.redis, keys).is_dirty("c2")
