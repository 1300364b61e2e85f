"""Store integrity: writes checked against the asked id, damaged keys refused and replaced."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fakeredis
import pytest

from core.bundle.codec import encode_bundle
from core.bundle.model import BundleDoc
from core.bundle.store import BundleStore, Encoding
from core.errors import BundleCorrupt, BundleIdMismatch
from core.keys import Keys
from tests.core.bundle.test_codec import make_doc


@pytest.fixture
def store(fake_redis: fakeredis.FakeRedis, keys: Keys) -> BundleStore:
    return BundleStore(fake_redis, keys)


def stored(store: BundleStore, course_id: str, **kwargs: Any) -> BundleDoc:
    doc = make_doc(course_id, store.next_generation(course_id), **kwargs)
    assert store.write(course_id, doc, encode_bundle(doc)).stored
    return doc


# --- the asked id --------------------------------------------------------------------------
def test_a_document_of_another_course_is_refused_and_leaves_that_course_alone(
    store: BundleStore,
) -> None:
    theirs = stored(store, "course-b")
    slug = theirs["course"]["slug"]
    imposter = make_doc("course-b", store.next_generation("course-a"))
    with pytest.raises(BundleIdMismatch):
        store.write("course-a", imposter, encode_bundle(imposter))
    assert store.read_doc("course-b") == theirs
    assert store.course_id_for_slug(slug) == "course-b"
    assert store.read("course-a") is None


def test_a_document_whose_course_record_is_another_is_refused(store: BundleStore) -> None:
    doc = make_doc("course-a", store.next_generation("course-a"))
    doc["course"]["sourcedId"] = "course-b"
    with pytest.raises(BundleIdMismatch):
        store.write("course-a", doc, encode_bundle(doc))
    assert store.read("course-a") is None


# --- damaged keys are refused on read --------------------------------------------------------
def _flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x5A]) + data[middle + 1 :]


BLOB_DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "garbled": _flip,
    "truncated": lambda data: data[: len(data) // 2],
    "emptied": lambda _data: b"",
}


@pytest.mark.parametrize("damage", sorted(BLOB_DAMAGE))
@pytest.mark.parametrize(
    ("encoding", "field"), [("identity", "json"), ("gzip", "gzip"), ("zstd", "zstd")]
)
def test_damaged_blob_bytes_fail_their_checksum(
    store: BundleStore,
    fake_redis: fakeredis.FakeRedis,
    keys: Keys,
    encoding: Encoding,
    field: str,
    damage: str,
) -> None:
    stored(store, "course-1")
    key = keys.bundle("course-1")
    good = fake_redis.hget(key, field)
    assert isinstance(good, bytes)
    fake_redis.hset(key, field, BLOB_DAMAGE[damage](good))
    with pytest.raises(BundleCorrupt) as caught:
        store.read("course-1", encoding)
    assert caught.value.context["reason"] == "checksum"
    assert caught.value.context["course_id"] == "course-1"


def test_a_damaged_checksum_is_refused_too(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    stored(store, "course-1")
    fake_redis.hset(keys.bundle("course-1"), "gzip_crc", "12345")
    with pytest.raises(BundleCorrupt):
        store.read("course-1", "gzip")


@pytest.mark.parametrize(
    ("field", "value"),
    [("generation", "12x"), ("raw_size", "many"), ("totals", "{not json"), ("stored_at", "now")],
)
def test_unreadable_metadata_is_refused(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys, field: str, value: str
) -> None:
    stored(store, "course-1")
    fake_redis.hset(keys.bundle("course-1"), field, value)
    with pytest.raises(BundleCorrupt) as caught:
        store.read("course-1")
    assert caught.value.context["reason"] == "meta"
    with pytest.raises(BundleCorrupt):
        store.meta("course-1")


def test_a_hash_holding_another_courses_bundle_is_refused(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    stored(store, "course-1")
    fake_redis.hset(keys.bundle("course-1"), "course_id", "course-2")
    with pytest.raises(BundleCorrupt) as caught:
        store.meta("course-1")
    assert caught.value.context["reason"] == "other_course"


def test_legacy_bundle_without_checksums_is_still_read(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    doc = stored(store, "course-1")
    fake_redis.hdel(keys.bundle("course-1"), "json_crc", "gzip_crc", "zstd_crc")
    assert store.read_doc("course-1") == doc


def test_json_that_does_not_decode_is_corrupt_not_unbuildable(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    stored(store, "course-1")
    fake_redis.hdel(keys.bundle("course-1"), "json_crc")  # no checksum to catch it first
    fake_redis.hset(keys.bundle("course-1"), "json", b'{"courseId": "course-1", "gen')
    with pytest.raises(BundleCorrupt) as caught:
        store.read_doc("course-1")
    assert caught.value.context["reason"] == "undecodable"


def _as_string(client: fakeredis.FakeRedis, key: str) -> None:
    client.delete(key)
    client.set(key, b"garbage")


def _as_hash(client: fakeredis.FakeRedis, key: str) -> None:
    client.delete(key)
    client.hset(key, "x", "y")


def _as_list(client: fakeredis.FakeRedis, key: str) -> None:
    client.delete(key)
    client.rpush(key, "x")


WRONG_TYPES = {"string": _as_string, "hash": _as_hash, "list": _as_list}


@pytest.mark.parametrize("wrong", ["string", "list"])
def test_a_bundle_key_of_the_wrong_type_is_corrupt_for_every_read(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys, wrong: str
) -> None:
    stored(store, "course-1")
    WRONG_TYPES[wrong](fake_redis, keys.bundle("course-1"))
    for read in (
        lambda: store.read("course-1", "gzip"),
        lambda: store.meta("course-1"),
        lambda: store.generation("course-1"),
    ):
        with pytest.raises(BundleCorrupt) as caught:
            read()
        assert caught.value.context["reason"] == "wrongtype"
    damaged: list[BundleCorrupt] = []
    assert store.metas(["course-1"], damaged=damaged) == []
    assert [d.context["course_id"] for d in damaged] == ["course-1"]


RESOURCE = "course-1-r1.1.1"  # a resource course-1 links (make_doc's ids)
INDEX_READS: dict[str, tuple[Callable[[Keys], str], str, Callable[[BundleStore], object]]] = {
    "slug": (lambda k: k.slug_index(), "string", lambda s: s.course_id_for_slug("any")),
    "subject": (
        lambda k: k.subject_index("math"),
        "hash",
        lambda s: s.course_ids_for_subject("math"),
    ),
    "resource": (
        lambda k: k.resource_index(RESOURCE),
        "string",
        lambda s: s.course_ids_for_resource(RESOURCE),
    ),
    "courses": (lambda k: k.courses(), "hash", lambda s: s.all_course_ids()),
}


@pytest.mark.parametrize("index", sorted(INDEX_READS))
def test_an_index_key_of_the_wrong_type_is_corrupt(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys, index: str
) -> None:
    key_of, wrong, read = INDEX_READS[index]
    WRONG_TYPES[wrong](fake_redis, key_of(keys))
    with pytest.raises(BundleCorrupt) as caught:
        read(store)
    assert caught.value.context["key"] == key_of(keys)
    assert "course_id" not in caught.value.context


# --- damaged keys are replaced by the next write ---------------------------------------------
@pytest.mark.parametrize("wrong", ["string", "list"])
def test_the_next_rebuild_replaces_a_bundle_key_of_the_wrong_type(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys, wrong: str
) -> None:
    stored(store, "course-1")
    WRONG_TYPES[wrong](fake_redis, keys.bundle("course-1"))
    doc = stored(store, "course-1")
    assert store.read_doc("course-1") == doc


@pytest.mark.parametrize("wrong", ["hash", "list", "text"])
def test_a_damaged_fence_is_reseeded_above_the_stored_generation(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys, wrong: str
) -> None:
    first = stored(store, "course-1")
    fence = keys.fence("course-1")
    if wrong == "text":
        fake_redis.set(fence, b"12abc")
    else:
        WRONG_TYPES[wrong](fake_redis, fence)
    generation = store.next_generation("course-1")
    assert generation > first["generation"]
    doc = make_doc("course-1", generation)
    assert store.write("course-1", doc, encode_bundle(doc)).stored


@pytest.mark.parametrize("index", sorted(INDEX_READS))
def test_a_write_rebuilds_a_damaged_index_with_every_courses_entries(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys, index: str
) -> None:
    other = stored(store, "course-2", slug="geometry")
    stored(store, "course-1")
    key_of, wrong, read = INDEX_READS[index]
    WRONG_TYPES[wrong](fake_redis, key_of(keys))
    stored(store, "course-1")
    read(store)  # readable again
    assert store.course_ids_for_resource(RESOURCE) == ["course-1"]
    assert store.all_course_ids() == ["course-1", "course-2"]
    assert store.course_id_for_slug("geometry") == "course-2"
    assert store.course_ids_for_subject(other["course"]["subject"]) == ["course-1", "course-2"]


def test_repair_index_restores_a_damaged_slug_index(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    stored(store, "course-1", slug="algebra")
    stored(store, "course-2", slug="geometry")
    _as_string(fake_redis, keys.slug_index())
    assert store.repair_index(keys.slug_index()) == 2
    assert store.course_id_for_slug("algebra") == "course-1"
    assert store.course_id_for_slug("geometry") == "course-2"


def test_an_unreadable_index_record_does_not_block_the_write(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    stored(store, "course-1")
    fake_redis.set(keys.course_indexes("course-1"), b"{broken")
    doc = stored(store, "course-1")
    assert store.course_id_for_slug(doc["course"]["slug"]) == "course-1"


# --- orphan fences expire --------------------------------------------------------------------
def test_the_fence_of_a_course_never_stored_expires(
    fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    store = BundleStore(fake_redis, keys)
    store.next_generation("course-1")  # a first build that then fails
    assert 0 < fake_redis.ttl(keys.fence("course-1")) <= 86400


def test_a_stored_write_makes_the_fence_persistent(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    stored(store, "course-1")
    assert fake_redis.ttl(keys.fence("course-1")) == -1
    assert fake_redis.ttl(keys.bundle("course-1")) == -1


def test_deleting_an_unknown_id_leaves_no_key_without_a_ttl(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    store.delete("nobody")
    left = fake_redis.keys(f"{keys.prefix}*")
    assert left
    assert all(fake_redis.ttl(k) > 0 for k in left)


def test_deleting_a_stored_course_lets_its_fence_expire(
    store: BundleStore, fake_redis: fakeredis.FakeRedis, keys: Keys
) -> None:
    stored(store, "course-1")
    store.delete("course-1")
    assert fake_redis.ttl(keys.fence("course-1")) > 0
