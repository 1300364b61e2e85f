"""The fenced bundle store on fakeredis: swaps, fencing, tombstones, indexes, pub/sub."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import fakeredis
import orjson
import pytest
from structlog.testing import capture_logs

from core.bundle.codec import decode_bundle, encode_bundle, etag_for
from core.bundle.model import BundleDoc
from core.bundle.store import BundleMeta, BundleStore, Encoding, WriteResult
from core.keys import Keys
from tests.core.bundle.test_codec import make_doc


@pytest.fixture
def store(fake_redis: fakeredis.FakeRedis, keys: Keys) -> BundleStore:
    return BundleStore(fake_redis, keys)


def put(store: BundleStore, doc: BundleDoc, **kwargs: Any) -> WriteResult:
    return store.write(doc["courseId"], doc, encode_bundle(doc), **kwargs)


def with_generation(doc: BundleDoc, generation: int) -> BundleDoc:
    return {**doc, "generation": generation}


# --- write and read -------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["identity", "gzip", "zstd"])
def test_written_bundle_reads_back_in_each_encoding(store: BundleStore, encoding: Encoding) -> None:
    doc = make_doc(generation=3)
    encoded = encode_bundle(doc)
    assert store.write(doc["courseId"], doc, encoded) == WriteResult(True, 3, 3)

    found = store.read("course-42", encoding)

    assert found is not None
    meta, body = found
    expected = {"identity": encoded.json, "gzip": encoded.gzip, "zstd": encoded.zstd}[encoding]
    assert body == expected
    assert isinstance(body, bytes)
    assert meta.etag == encoded.etag
    assert decode_bundle(body) == doc


def test_meta_describes_the_stored_bundle(store: BundleStore) -> None:
    doc = make_doc(generation=7)
    encoded = encode_bundle(doc)
    store.write(
        doc["courseId"], doc, encoded, upstream_requests=12, source_modified="2026-11-20T08:00:00Z"
    )

    meta = store.meta("course-42")

    assert meta is not None
    assert meta == BundleMeta(
        course_id="course-42",
        generation=7,
        built_at="2026-11-22T10:15:03.420Z",
        slug="cc-sixth-grade-math",
        subject="math",
        title="6th grade math",
        raw_size=len(encoded.json),
        gzip_size=len(encoded.gzip),
        zstd_size=len(encoded.zstd),
        etag=encoded.etag,
        skipped=0,
        upstream_requests=12,
        source_modified="2026-11-20T08:00:00Z",
        totals=dict(doc["totals"]),
        stored_at=meta.stored_at,
    )
    assert meta.stored_at > 0
    assert store.generation("course-42") == 7


def test_missing_source_modified_reads_as_none(store: BundleStore) -> None:
    put(store, make_doc())
    meta = store.meta("course-42")
    assert meta is not None and meta.source_modified is None


def test_read_doc_returns_the_document(store: BundleStore) -> None:
    doc = make_doc(generation=2)
    put(store, doc)
    assert store.read_doc("course-42") == doc


def test_unknown_course_reads_as_absent(store: BundleStore) -> None:
    assert store.read("nope") is None
    assert store.read_doc("nope") is None
    assert store.meta("nope") is None
    assert store.generation("nope") is None


def test_metas_returns_live_bundles_in_the_order_asked(store: BundleStore) -> None:
    for course_id in ("c-a", "c-b", "c-c"):
        put(store, make_doc(course_id, 1, slug=f"slug-{course_id}"))
    store.delete("c-b")

    metas = store.metas(["c-c", "c-b", "missing", "c-a"])

    assert [(m.course_id, m.slug) for m in metas] == [("c-c", "slug-c-c"), ("c-a", "slug-c-a")]


# --- fencing --------------------------------------------------------------------------------
@pytest.mark.parametrize("late_generation", [5, 4, 1])
def test_write_at_or_below_the_stored_generation_is_rejected(
    store: BundleStore, late_generation: int
) -> None:
    current = make_doc(generation=5)
    put(store, current)
    late = copy.deepcopy(make_doc(generation=late_generation))
    late["course"]["title"] = "An older title"

    result = put(store, late)

    assert result == WriteResult(stored=False, generation=late_generation, stored_generation=5)
    assert store.read_doc("course-42") == current


def test_stale_write_is_logged_as_rejected(store: BundleStore) -> None:
    put(store, make_doc(generation=5))
    with capture_logs() as logs:
        put(store, make_doc(generation=4))
    assert [e["outcome"] for e in logs] == ["stale_rejected"]
    assert logs[0]["course_id"] == "course-42" and logs[0]["generation"] == 4


def test_newer_write_replaces_the_bundle(store: BundleStore) -> None:
    put(store, make_doc(generation=1))
    newer = make_doc(generation=2, title="Renamed course")
    assert put(store, newer).stored
    assert store.read_doc("course-42") == newer


def test_next_generation_is_strictly_increasing(store: BundleStore) -> None:
    taken = [store.next_generation("course-42") for _ in range(5)]
    assert taken == sorted(set(taken))
    assert taken == list(range(taken[0], taken[0] + 5))  # one apart: a counter, not the clock


def test_a_first_generation_starts_at_the_redis_clock_in_milliseconds(
    store: BundleStore, fake_redis: fakeredis.FakeRedis
) -> None:
    seconds, micros = fake_redis.time()
    first = store.next_generation("other")
    assert seconds * 1000 + micros // 1000 < first < 2**53  # safe as a JavaScript number


def test_generations_keep_growing_after_redis_loses_everything(
    store: BundleStore, fake_redis: fakeredis.FakeRedis
) -> None:
    put(store, make_doc(generation=store.next_generation("course-42")))
    before = store.next_generation("course-42")
    time.sleep(0.002)

    fake_redis.flushall()

    assert store.next_generation("course-42") > before


def test_next_generation_exceeds_stored_even_after_the_fence_is_lost(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    put(store, make_doc(generation=40))
    assert store.next_generation("course-42") > 40

    fake_redis.delete(keys.fence("course-42"))
    regained = store.next_generation("course-42")

    assert regained > 40
    assert store.next_generation("course-42") > regained
    assert put(store, make_doc(generation=regained)).stored


# --- delete and tombstones ------------------------------------------------------------------
def test_delete_removes_the_bundle_and_its_index_entries(store: BundleStore) -> None:
    put(store, make_doc(generation=3))

    assert store.delete("course-42") is True

    assert store.read("course-42") is None
    assert store.meta("course-42") is None
    assert store.generation("course-42") is None
    assert store.course_id_for_slug("cc-sixth-grade-math") is None
    assert store.course_ids_for_subject("math") == []
    assert store.course_ids_for_resource("course-42-r1.1.1") == []
    assert store.course_ids_for_resource("course-42-challenge") == []
    assert store.all_course_ids() == []


def test_delete_tombstone_rejects_a_late_older_rebuild(store: BundleStore) -> None:
    put(store, make_doc(generation=store.next_generation("course-42")))
    in_flight = store.next_generation("course-42")  # a rebuild started before the delete

    store.delete("course-42")
    result = put(store, make_doc(generation=in_flight))

    assert result.stored is False
    assert result.stored_generation > in_flight
    assert store.read("course-42") is None
    assert store.all_course_ids() == []


def test_tombstone_expires_after_its_ttl(fake_redis: fakeredis.FakeRedis, keys: Keys) -> None:
    store = BundleStore(fake_redis, keys, tombstone_ttl_s=600)
    put(store, make_doc(generation=1))
    store.delete("course-42")
    assert 0 < fake_redis.ttl(keys.bundle("course-42")) <= 600


def test_a_rebuild_after_delete_brings_the_course_back(store: BundleStore) -> None:
    put(store, make_doc(generation=1))
    store.delete("course-42")

    doc = make_doc(generation=store.next_generation("course-42"))
    assert put(store, doc).stored

    assert store.read_doc("course-42") == doc
    assert store.course_id_for_slug("cc-sixth-grade-math") == "course-42"
    assert store.all_course_ids() == ["course-42"]


def test_rebuilt_bundle_does_not_expire_like_the_tombstone(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    store.delete("course-42")
    put(store, make_doc(generation=store.next_generation("course-42")))
    assert fake_redis.ttl(keys.bundle("course-42")) == -1


def test_delete_of_a_never_built_course_still_fences_it(store: BundleStore) -> None:
    in_flight = store.next_generation("course-42")
    assert store.delete("course-42") is False
    assert put(store, make_doc(generation=in_flight)).stored is False


# --- indexes --------------------------------------------------------------------------------
def test_indexes_find_a_stored_course(store: BundleStore) -> None:
    put(store, make_doc(generation=1))
    assert store.course_id_for_slug("cc-sixth-grade-math") == "course-42"
    assert store.course_ids_for_subject("math") == ["course-42"]
    assert store.course_ids_for_resource("course-42-r2.2.3") == ["course-42"]
    assert store.course_ids_for_resource("course-42-challenge") == ["course-42"]
    assert store.all_course_ids() == ["course-42"]


def test_resource_that_leaves_the_course_leaves_the_index(store: BundleStore) -> None:
    doc = make_doc(generation=1)
    put(store, doc)
    newer = copy.deepcopy(with_generation(doc, 2))
    newer["units"][0]["lessons"][0]["resources"].pop(0)  # course-42-r1.1.1
    newer["courseChallenge"] = None

    put(store, newer)

    assert store.course_ids_for_resource("course-42-r1.1.1") == []
    assert store.course_ids_for_resource("course-42-challenge") == []
    assert store.course_ids_for_resource("course-42-r1.1.2") == ["course-42"]


def test_slug_change_moves_the_slug_index(store: BundleStore) -> None:
    put(store, make_doc(generation=1, slug="old-slug"))
    put(store, make_doc(generation=2, slug="new-slug"))
    assert store.course_id_for_slug("old-slug") is None
    assert store.course_id_for_slug("new-slug") == "course-42"


def test_losing_a_slug_does_not_unindex_the_course_that_took_it(store: BundleStore) -> None:
    put(store, make_doc("course-a", 1, slug="shared"))
    put(store, make_doc("course-b", 1, slug="shared"))  # b takes the slug over
    put(store, make_doc("course-a", 2, slug="a-new"))
    assert store.course_id_for_slug("shared") == "course-b"
    assert store.course_id_for_slug("a-new") == "course-a"


def test_subject_index_lists_courses_sorted_and_follows_subject_changes(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    put(store, make_doc("c-2", 1, slug="s2", subject="math"))
    put(store, make_doc("c-1", 1, slug="s1", subject="math"))
    put(store, make_doc("c-3", 1, slug="s3", subject="science"))
    assert store.course_ids_for_subject("math") == ["c-1", "c-2"]

    put(store, make_doc("c-3", 2, slug="s3", subject="history"))
    put(store, make_doc("c-1", 2, slug="s1", subject="history"))

    assert store.course_ids_for_subject("math") == ["c-2"]
    assert store.course_ids_for_subject("history") == ["c-1", "c-3"]
    assert store.course_ids_for_subject("science") == []
    assert fake_redis.smembers(keys.subjects()) == {b"math", b"history"}


def test_shared_resource_lists_every_course_sorted(store: BundleStore) -> None:
    put(store, make_doc("c-b", 1, slug="b"), resource_ids=["shared", "only-b"])
    put(store, make_doc("c-a", 1, slug="a"), resource_ids=["shared"])
    assert store.course_ids_for_resource("shared") == ["c-a", "c-b"]
    assert store.course_ids_for_resource("only-b") == ["c-b"]
    assert store.course_ids_for_resource("c-a-r1.1.1") == []  # given ids replace the doc's
    assert store.all_course_ids() == ["c-a", "c-b"]


# --- pub/sub --------------------------------------------------------------------------------
def _next_message(pubsub: Any) -> dict[str, Any]:
    message = pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
    assert message is not None
    return dict(orjson.loads(message["data"]))


def test_swap_and_delete_are_published(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    pubsub = fake_redis.pubsub()
    pubsub.subscribe(keys.swaps_channel())
    pubsub.get_message(timeout=1.0)  # the subscribe confirmation

    put(store, make_doc(generation=4))
    put(store, make_doc(generation=3))  # stale: nothing published
    store.delete("course-42")

    assert _next_message(pubsub) == {"courseId": "course-42", "generation": 4, "deleted": False}
    deleted = _next_message(pubsub)
    assert deleted["deleted"] is True and deleted["generation"] > 4
    assert pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05) is None
    pubsub.close()


# --- atomicity ------------------------------------------------------------------------------
class InterleavingRedis(fakeredis.FakeRedis):
    """A client that lets another client act after each command it sends (a deterministic race)."""

    between: Callable[[], None] | None = None

    def execute_command(self, *args: Any, **options: Any) -> Any:
        result = super().execute_command(*args, **options)
        hook, self.between = self.between, None
        if hook is not None:
            try:
                hook()
            finally:
                self.between = hook
        return result


def _consistent_generation(found: tuple[BundleMeta, bytes] | None) -> int | None:
    if found is None:
        return None
    meta, body = found
    assert decode_bundle(body)["generation"] == meta.generation
    assert etag_for(body) == meta.etag
    assert meta.raw_size == len(body)
    return meta.generation


def test_a_reader_during_a_write_sees_the_old_or_the_new_bundle_never_a_mix(keys: Keys) -> None:
    server = fakeredis.FakeServer()
    writer = BundleStore(InterleavingRedis(server=server), keys)
    reader = BundleStore(fakeredis.FakeRedis(server=server), keys)
    put(writer, make_doc(generation=1, slug="slug-1"))
    seen: list[int | None] = []
    writer_client = writer._redis
    assert isinstance(writer_client, InterleavingRedis)
    writer_client.between = lambda: seen.append(_consistent_generation(reader.read("course-42")))

    put(writer, make_doc(generation=2, slug="slug-2"))

    assert seen, "the reader never ran"
    assert set(seen) <= {1, 2}
    assert seen[-1] == 2


def test_a_write_during_a_read_never_mixes_the_snapshot(keys: Keys) -> None:
    server = fakeredis.FakeServer()
    reader_client = InterleavingRedis(server=server)
    reader = BundleStore(reader_client, keys)
    writer = BundleStore(fakeredis.FakeRedis(server=server), keys)
    put(writer, make_doc(generation=1))
    generations = iter(range(2, 100))
    reader_client.between = lambda: put(writer, make_doc(generation=next(generations)))

    observed = [_consistent_generation(reader.read("course-42")) for _ in range(5)]

    assert observed == sorted(observed)
    assert store_generation(writer) > (observed[-1] or 0)


def store_generation(store: BundleStore) -> int:
    generation = store.generation("course-42")
    assert generation is not None
    return generation


def test_an_older_writers_late_index_update_does_not_undo_a_newer_one(keys: Keys) -> None:
    server = fakeredis.FakeServer()
    slow_client = InterleavingRedis(server=server)
    slow = BundleStore(slow_client, keys)
    fast = BundleStore(fakeredis.FakeRedis(server=server), keys)
    older, newer = (
        make_doc(generation=2, slug="older-slug"),
        make_doc(generation=3, slug="new-slug"),
    )
    raced: list[bool] = []

    def newer_rebuild_wins_the_race() -> None:
        # Runs right after the slow writer's swap, before its index update.
        if not raced and fast.generation("course-42") == 2:
            raced.append(
                fast.write(
                    newer["courseId"], newer, encode_bundle(newer), resource_ids=["r-new"]
                ).stored
            )

    slow_client.between = newer_rebuild_wins_the_race
    assert slow.write(older["courseId"], older, encode_bundle(older), resource_ids=["r-old"]).stored

    assert raced == [True]
    assert fast.course_id_for_slug("new-slug") == "course-42"
    assert fast.course_id_for_slug("older-slug") is None
    assert fast.course_ids_for_resource("r-new") == ["course-42"]
    assert fast.course_ids_for_resource("r-old") == []
