"""The fenced bundle store against the real Redis: scripts, indexes, and racing writers."""

from __future__ import annotations

import random
import threading

import pytest
import redis

from core.bundle.codec import EncodedBundle, decode_bundle, encode_bundle, etag_for
from core.bundle.model import BundleDoc
from core.bundle.store import BundleStore
from core.errors import BundleCorrupt
from core.keys import Keys
from tests.core.bundle.test_codec import make_doc

pytestmark = pytest.mark.integration


def test_write_read_index_and_delete(real_redis: redis.Redis, keys: Keys) -> None:
    store = BundleStore(real_redis, keys)
    doc = make_doc(generation=store.next_generation("course-42"))
    encoded = encode_bundle(doc)

    assert store.write(doc["courseId"], doc, encoded).stored
    found = store.read("course-42", "zstd")
    assert found is not None and found[1] == encoded.zstd
    assert store.read_doc("course-42") == doc
    assert store.course_id_for_slug("cc-sixth-grade-math") == "course-42"
    assert store.course_ids_for_subject("math") == ["course-42"]
    assert store.course_ids_for_resource("course-42-r1.2.3") == ["course-42"]

    late = store.next_generation("course-42") - 1  # below the next one: stale
    assert store.write(doc["courseId"], {**doc, "generation": late}, encoded).stored is False

    assert store.delete("course-42") is True
    assert store.read("course-42") is None
    assert store.course_id_for_slug("cc-sixth-grade-math") is None
    assert store.course_ids_for_subject("math") == []
    assert store.course_ids_for_resource("course-42-r1.2.3") == []
    assert store.all_course_ids() == []
    assert 0 < real_redis.ttl(keys.bundle("course-42")) <= 86400


def test_racing_writers_leave_the_highest_generation_and_its_indexes(
    real_redis: redis.Redis, keys: Keys
) -> None:
    rng = random.Random(20261122)
    generations = list(range(1, 121))
    bundles: dict[int, tuple[BundleDoc, EncodedBundle]] = {}
    for g in generations:
        doc = make_doc(generation=g, slug=f"slug-{g % 7}", subject=f"subject-{g % 3}")
        bundles[g] = (doc, encode_bundle(doc))
    rng.shuffle(generations)
    shares = [generations[i::6] for i in range(6)]
    stop = threading.Event()
    problems: list[str] = []

    def writer(mine: list[int]) -> None:
        store = BundleStore(real_redis, keys)
        for g in mine:
            doc, encoded = bundles[g]
            store.write(doc["courseId"], doc, encoded, resource_ids=["shared", f"extra-{g}"])

    def reader() -> None:
        store = BundleStore(real_redis, keys)
        while not stop.is_set():
            found = store.read("course-42")
            if found is None:
                continue
            meta, body = found
            if decode_bundle(body)["generation"] != meta.generation or etag_for(body) != meta.etag:
                problems.append(f"mixed snapshot at generation {meta.generation}")

    threads = [threading.Thread(target=writer, args=(share,)) for share in shares]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    stop.set()
    watcher.join(timeout=30)

    store = BundleStore(real_redis, keys)
    assert problems == []
    assert store.generation("course-42") == 120
    found = store.read("course-42")
    assert found is not None and found[1] == bundles[120][1].json
    assert store.course_id_for_slug(f"slug-{120 % 7}") == "course-42"
    assert [s for s in range(7) if store.course_id_for_slug(f"slug-{s}")] == [120 % 7]
    assert store.course_ids_for_subject(f"subject-{120 % 3}") == ["course-42"]
    assert [s for s in range(3) if store.course_ids_for_subject(f"subject-{s}")] == [120 % 3]
    assert real_redis.smembers(keys.subjects()) == {f"subject-{120 % 3}".encode()}
    assert store.course_ids_for_resource("shared") == ["course-42"]
    assert store.course_ids_for_resource("extra-120") == ["course-42"]
    assert [g for g in range(1, 120) if store.course_ids_for_resource(f"extra-{g}")] == []


def test_orphan_fences_expire_and_a_stored_write_keeps_them(
    real_redis: redis.Redis, keys: Keys
) -> None:
    store = BundleStore(real_redis, keys)
    store.next_generation("failed-first-build")
    assert 0 < real_redis.ttl(keys.fence("failed-first-build")) <= 86400
    store.delete("never-existed")
    assert all(real_redis.ttl(k) > 0 for k in real_redis.keys(f"{keys.prefix}{{course:never*"))
    doc = make_doc("course-42", store.next_generation("course-42"))
    assert real_redis.ttl(keys.fence("course-42")) > 0
    assert store.write("course-42", doc, encode_bundle(doc)).stored
    assert real_redis.ttl(keys.fence("course-42")) == -1
    store.delete("course-42")
    assert real_redis.ttl(keys.fence("course-42")) > 0


def test_damaged_keys_are_refused_and_replaced_by_the_next_write(
    real_redis: redis.Redis, keys: Keys
) -> None:
    store = BundleStore(real_redis, keys)
    doc = make_doc("course-42", store.next_generation("course-42"))
    store.write("course-42", doc, encode_bundle(doc))
    real_redis.hset(keys.bundle("course-42"), "gzip", b"\x1f\x8b broken")
    with pytest.raises(BundleCorrupt):
        store.read("course-42", "gzip")
    real_redis.delete(keys.bundle("course-42"), keys.fence("course-42"), keys.slug_index())
    real_redis.set(keys.bundle("course-42"), b"string where a hash belongs")
    real_redis.hset(keys.fence("course-42"), "hash", "where a counter belongs")
    real_redis.set(keys.slug_index(), b"string where a hash belongs")
    with pytest.raises(BundleCorrupt):
        store.meta("course-42")
    with pytest.raises(BundleCorrupt):
        store.course_id_for_slug("cc-sixth-grade-math")
    again = make_doc("course-42", store.next_generation("course-42"))
    assert store.write("course-42", again, encode_bundle(again)).stored
    assert store.read_doc("course-42") == again
    assert store.course_id_for_slug("cc-sixth-grade-math") == "course-42"
