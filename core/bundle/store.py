"""The fenced bundle store: one Redis hash per course, swapped whole, plus cross-course indexes.

Every rebuild takes a fencing generation (``next_generation``) before it reads OneRoster; a write
is stored only if its generation beats the stored one, so a slow, older rebuild can never
overwrite a newer bundle, and a delete leaves a tombstone that rejects late writes too.

Cluster caveat: a course's own keys (bundle hash, fence, index record) share the ``{course:ID}``
hash tag, so the Lua scripts touching them stay in one slot. The slug, subject, resource and
course indexes are cross-slot: they are updated after the swap in a WATCH/MULTI pipeline,
guarded by the swapped generation, so they may lag the bundle briefly and, on a Redis Cluster,
that pipeline is not one transaction (a crash can leave an index entry for the next rebuild or
the reconciler to repair).

Integrity: a write is refused unless the document is the course it is stored under. Each blob is
stored with its CRC-32 (``json_crc``, ``gzip_crc``, ``zstd_crc``); a read that finds a damaged key
(wrong Redis type, unreadable metadata, a bad checksum) raises ``BundleCorrupt`` instead of
answering with the damage. Writes replace damaged per-course keys, and a damaged cross-course
index is derived again from the per-course index records (``repair_index``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Literal, cast

import orjson
import redis

from core.bundle.codec import EncodedBundle, blob_checksum, decode_bundle
from core.bundle.model import BundleDoc
from core.bundle.validation import BundleShape, content_digest
from core.errors import BundleCorrupt, BundleError, BundleIdMismatch
from core.keys import Keys
from core.logging import get_logger
from core.settings import Settings

Encoding = Literal["identity", "gzip", "zstd"]

_BLOB_FIELD: dict[str, str] = {"identity": "json", "gzip": "gzip", "zstd": "zstd"}
_CRC_FIELD: dict[str, str] = {"identity": "json_crc", "gzip": "gzip_crc", "zstd": "zstd_crc"}
_META_FIELDS: tuple[str, ...] = (
    "generation",
    "deleted",
    "course_id",
    "built_at",
    "slug",
    "subject",
    "title",
    "raw_size",
    "gzip_size",
    "zstd_size",
    "etag",
    "skipped",
    "upstream_requests",
    "source_modified",
    "totals",
    "stored_at",
)
# Retries of the index transaction when a watched key changed under it.
_INDEX_ATTEMPTS = 8

_log = get_logger(__name__)


def _lua(name: str) -> str:
    return resources.files("core.bundle").joinpath("lua", f"{name}.lua").read_text("utf-8")


@dataclass(frozen=True, slots=True)
class BundleMeta:
    """What is known about a stored bundle without reading its bytes."""

    course_id: str
    generation: int
    built_at: str
    slug: str
    subject: str
    title: str
    raw_size: int
    gzip_size: int
    zstd_size: int
    etag: str
    skipped: int
    upstream_requests: int
    source_modified: str | None
    totals: dict[str, int]
    stored_at: float


@dataclass(frozen=True, slots=True)
class KeptGeneration:
    """An earlier generation of a course kept for rollback (its bytes stay in Redis)."""

    generation: int
    built_at: str
    etag: str
    totals: dict[str, int]
    raw_size: int
    zstd_size: int
    stored_at: float


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of a fenced write; ``stored`` is False when a newer generation was already there."""

    stored: bool
    generation: int
    stored_generation: int


@dataclass(frozen=True, slots=True)
class _Contribution:
    """The index entries one course's bundle contributes (remembered so they can be undone)."""

    slug: str
    subject: str
    resources: frozenset[str]

    def dumps(self, generation: int) -> bytes:
        return orjson.dumps(
            {
                "generation": generation,
                "slug": self.slug,
                "subject": self.subject,
                "resources": sorted(self.resources),
            }
        )

    @classmethod
    def loads(cls, raw: bytes | None) -> _Contribution | None:
        """The remembered contribution; None when absent or unreadable (damage: nothing to undo)."""
        if raw is None:
            return None
        try:
            data = orjson.loads(raw)
            return cls(
                str(data["slug"]), str(data["subject"]), frozenset(map(str, data["resources"]))
            )
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None

    def entries(self, keys: Keys, course_id: str) -> list[tuple[str, str, str | None]]:
        """Every index entry of this course: (key, set member or hash field, hash value)."""
        found: list[tuple[str, str, str | None]] = [(keys.courses(), course_id, None)]
        if self.slug:
            found.append((keys.slug_index(), self.slug, course_id))
        if self.subject:
            found.append((keys.subject_index(self.subject), course_id, None))
            found.append((keys.subjects(), self.subject, None))
        found += [(keys.resource_index(rid), course_id, None) for rid in sorted(self.resources)]
        return found


def resource_ids_of(doc: BundleDoc) -> frozenset[str]:
    """Every resource id a bundle links: each lesson resource and the course challenge."""
    ids = {
        res["resourceId"]
        for unit in doc["units"]
        for lesson in unit["lessons"]
        for res in lesson["resources"]
    }
    challenge = doc["courseChallenge"]
    if challenge is not None:
        ids.add(challenge["resourceId"])
    return frozenset(ids)


def _opt_bytes(value: object) -> bytes | None:
    """A reply as bytes (the client never decodes), or None."""
    return value if isinstance(value, bytes) else None


def _watch(pipe: redis.client.Pipeline, *keys: str) -> None:
    cast(Any, pipe).watch(*keys)  # redis-py leaves Pipeline.watch untyped


def _text(value: bytes | None) -> str:
    return value.decode() if value is not None else ""


def _is_wrongtype(exc: redis.ResponseError) -> bool:
    # redis-py prefixes pipeline errors with the command's position, so search, not startswith.
    return "WRONGTYPE" in str(exc)


def _wrongtype(key: str, exc: redis.ResponseError, course_id: str | None = None) -> BundleCorrupt:
    context: dict[str, Any] = {"key": key, "reason": "wrongtype"}
    if course_id is not None:
        context["course_id"] = course_id
    return BundleCorrupt("a stored key holds the wrong Redis type", cause=str(exc), **context)


def _meta(values: Sequence[bytes | None], course_id: str, key: str) -> BundleMeta | None:
    """A ``BundleMeta`` from HMGET values in ``_META_FIELDS`` order; None if absent or deleted.

    Raises ``BundleCorrupt`` when the fields are there but unreadable or name another course.
    """
    got = dict(zip(_META_FIELDS, values, strict=False))
    if got["generation"] is None or got["deleted"] == b"1" or got["course_id"] is None:
        return None
    try:
        meta = _parse_meta(got)
    except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError) as exc:
        raise BundleCorrupt(
            "stored bundle metadata is unreadable",
            course_id=course_id,
            key=key,
            reason="meta",
            cause=str(exc),
        ) from exc
    if meta.course_id != course_id:
        raise BundleCorrupt(
            "stored bundle belongs to another course",
            course_id=course_id,
            key=key,
            reason="other_course",
            stored_course_id=meta.course_id,
        )
    return meta


def _parse_meta(got: dict[str, bytes | None]) -> BundleMeta:
    return BundleMeta(
        course_id=_text(got["course_id"]),
        generation=int(_text(got["generation"])),
        built_at=_text(got["built_at"]),
        slug=_text(got["slug"]),
        subject=_text(got["subject"]),
        title=_text(got["title"]),
        raw_size=int(_text(got["raw_size"]) or 0),
        gzip_size=int(_text(got["gzip_size"]) or 0),
        zstd_size=int(_text(got["zstd_size"]) or 0),
        etag=_text(got["etag"]),
        skipped=int(_text(got["skipped"]) or 0),
        upstream_requests=int(_text(got["upstream_requests"]) or 0),
        source_modified=_text(got["source_modified"]) or None,
        totals={str(k): int(v) for k, v in orjson.loads(got["totals"] or b"{}").items()},
        stored_at=float(_text(got["stored_at"]) or 0.0),
    )


def checked_doc(course_id: str, meta: BundleMeta, raw: bytes, *, key: str = "") -> BundleDoc:
    """Decode stored JSON bytes, insisting they are the bundle ``meta`` describes.

    Raises ``BundleCorrupt`` (reason ``undecodable``) rather than the codec's ``BundleError``, so
    a damaged stored bundle is never mistaken for unbuildable OneRoster data.
    """
    try:
        doc = decode_bundle(raw)
    except BundleError as exc:
        raise BundleCorrupt(
            "stored bundle does not decode",
            course_id=course_id,
            key=key,
            reason="undecodable",
            generation=meta.generation,
            cause=exc.message,
        ) from exc
    if doc["courseId"] != course_id or doc["generation"] != meta.generation:
        raise BundleCorrupt(
            "stored bundle is not the one its metadata describes",
            course_id=course_id,
            key=key,
            reason="undecodable",
            generation=meta.generation,
        )
    return doc


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class BundleStore:
    """Fenced, atomic storage of course bundles in Redis, and the indexes that find them."""

    @classmethod
    def from_settings(
        cls, redis_client: redis.Redis, keys: Keys, settings: Settings
    ) -> BundleStore:
        """The store as every process configures it (orphan fence TTL, kept generations)."""
        return cls(
            redis_client,
            keys,
            orphan_fence_ttl_s=settings.orphan_fence_ttl_s,
            keep_generations=settings.publish_keep_generations,
        )

    def __init__(
        self,
        redis: redis.Redis,
        keys: Keys,
        *,
        tombstone_ttl_s: int = 86400,
        orphan_fence_ttl_s: int = 86400,
        keep_generations: int = 3,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.keep_generations = max(0, keep_generations)
        self._tombstone_ttl_s = tombstone_ttl_s
        self._orphan_fence_ttl_s = orphan_fence_ttl_s
        self._fence = redis.register_script(_lua("next_generation") + _lua("bundle_fence"))
        self._write = redis.register_script(_lua("bundle_write"))
        self._delete = redis.register_script(_lua("next_generation") + _lua("bundle_delete"))
        self._hdel_if_eq = redis.register_script(_lua("hdel_if_eq"))
        self._fence_discard = redis.register_script(_lua("fence_discard"))

    @property
    def client(self) -> redis.Redis:
        """The client this store uses (for wiring helpers that share it, e.g. a dirty mark)."""
        return self._redis

    def key_of(self, course_id: str) -> str:
        """The key of the course's bundle hash (named in corruption reports)."""
        return self._keys.bundle(course_id)

    # --- writing ------------------------------------------------------------------------------
    def next_generation(self, course_id: str) -> int:
        """Take the course's next fencing generation (before reading OneRoster for a rebuild).

        A course without a live bundle keeps its fence only ``orphan_fence_ttl_s``.
        """
        keys = [self._keys.bundle(course_id), self._keys.fence(course_id)]
        return int(self._fence(keys=keys, args=[self._orphan_fence_ttl_s]))

    def write(
        self,
        course_id: str,
        doc: BundleDoc,
        encoded: EncodedBundle,
        *,
        upstream_requests: int = 0,
        source_modified: str | None = None,
        resource_ids: Iterable[str] = (),
        shape: BundleShape | None = None,
        digest: str | None = None,
    ) -> WriteResult:
        """Swap in ``doc`` as ``course_id`` if its generation beats the stored one; index, publish.

        The replaced bundle joins the course's kept generations (``keep_generations``), and the
        new one's ``shape`` and content ``digest`` are stored for the next validation.

        Raises ``BundleIdMismatch`` (nothing stored) when the document is another course's: a
        record OneRoster answered for the wrong id must not replace that other course's bundle.
        """
        started = time.perf_counter()
        course = doc["course"]
        if doc["courseId"] != course_id or course["sourcedId"] != course_id:
            _log.error(
                "bundle write refused: document is another course",
                course_id=course_id,
                generation=doc["generation"],
                doc_course_id=doc["courseId"],
                doc_sourced_id=course["sourcedId"],
                outcome="id_mismatch",
            )
            raise BundleIdMismatch(
                "bundle document names another course than the one written",
                course_id=course_id,
                doc_course_id=doc["courseId"],
                doc_sourced_id=course["sourcedId"],
            )
        generation = doc["generation"]
        fields: dict[str, Any] = {
            "deleted": "0",
            "deleted_at": "",
            "course_id": course_id,
            "built_at": doc["builtAt"],
            "slug": course["slug"],
            "subject": course["subject"],
            "title": course["title"],
            "raw_size": len(encoded.json),
            "gzip_size": len(encoded.gzip),
            "zstd_size": len(encoded.zstd),
            "etag": encoded.etag,
            "skipped": doc["skipped"],
            "upstream_requests": upstream_requests,
            "source_modified": source_modified or "",
            "totals": orjson.dumps(doc["totals"]),
            "stored_at": repr(time.time()),
            "json": encoded.json,
            "gzip": encoded.gzip,
            "zstd": encoded.zstd,
            "json_crc": blob_checksum(encoded.json),
            "gzip_crc": blob_checksum(encoded.gzip),
            "zstd_crc": blob_checksum(encoded.zstd),
            "shape": (shape or BundleShape.of(doc)).dumps(),
            "digest": digest or content_digest(encoded.json),
        }
        args: list[Any] = [generation, self.keep_generations, fields["digest"]]
        for name, value in fields.items():
            args += [name, value]
        keys = [
            self._keys.bundle(course_id),
            self._keys.fence(course_id),
            self._keys.kept(course_id),
        ]
        stored, stored_generation = cast(list[int], self._write(keys=keys, args=args))
        result = WriteResult(bool(stored), generation, int(stored_generation))
        if not result.stored:
            _log.info(
                "bundle write rejected",
                course_id=course_id,
                generation=generation,
                stored_generation=result.stored_generation,
                outcome="stale_rejected",
            )
            return result
        ids = frozenset(resource_ids) or resource_ids_of(doc)
        self._sync_indexes(
            course_id, generation, _Contribution(course["slug"], course["subject"], ids)
        )
        self._publish(course_id, generation, deleted=False)
        _log.info(
            "bundle stored",
            course_id=course_id,
            generation=generation,
            outcome="stored",
            raw_size=len(encoded.json),
            gzip_size=len(encoded.gzip),
            zstd_size=len(encoded.zstd),
            resources=len(ids),
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return result

    def is_known(self, course_id: str) -> bool:
        """True when a bundle or a tombstone exists for the course."""
        return bool(self._redis.exists(self._keys.bundle(course_id)))

    def discard_fence(self, course_id: str) -> bool:
        """Forget the fence counter of a course that was never stored (nothing to protect)."""
        keys = [self._keys.bundle(course_id), self._keys.fence(course_id)]
        return bool(self._fence_discard(keys=keys, args=[]))

    def delete(self, course_id: str) -> bool:
        """Tombstone the course (rejecting older in-flight writes), drop its index entries.

        A held build and a pin go with it; kept generations live as long as the tombstone.
        Returns True when a live bundle was removed.
        """
        keys = [
            self._keys.bundle(course_id),
            self._keys.fence(course_id),
            self._keys.kept(course_id),
        ]
        args: list[str | int] = [
            _rfc3339(time.time()),
            self._tombstone_ttl_s,
            self._orphan_fence_ttl_s,
        ]
        generation, was_live = cast(list[int], self._delete(keys=keys, args=args))
        k = self._keys
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(k.held(course_id), k.pin(course_id), k.removals(course_id))
            pipe.zrem(k.held_index(), course_id)
            pipe.srem(k.pinned_index(), course_id)
            pipe.execute()
        self._sync_indexes(course_id, int(generation), None)
        self._publish(course_id, int(generation), deleted=True)
        _log.info(
            "bundle deleted",
            course_id=course_id,
            generation=int(generation),
            outcome="deleted",
            was_live=bool(was_live),
        )
        return bool(was_live)

    def _publish(self, course_id: str, generation: int, *, deleted: bool) -> None:
        message = {"courseId": course_id, "generation": generation, "deleted": deleted}
        self._redis.publish(self._keys.swaps_channel(), orjson.dumps(message))

    def _sync_indexes(self, course_id: str, generation: int, new: _Contribution | None) -> bool:
        """Make the cross-course indexes reflect ``new`` (None: the course is gone).

        Runs only while ``generation`` is still the stored one; the bundle hash is watched, so a
        newer swap in between aborts this transaction and the newer writer's own sync wins.
        """
        bundle_key = self._keys.bundle(course_id)
        record_key = self._keys.course_indexes(course_id)
        for _ in range(_INDEX_ATTEMPTS):
            old: _Contribution | None = None
            with self._redis.pipeline(transaction=True) as pipe:
                try:
                    _watch(pipe, bundle_key, record_key)
                    current = _opt_bytes(pipe.hget(bundle_key, "generation"))
                    if current is None or int(current) != generation:
                        return False
                    old = _Contribution.loads(_opt_bytes(pipe.get(record_key)))
                    if old is None and pipe.exists(record_key):
                        _log.warning(
                            "course index record unreadable; replaced",
                            course_id=course_id,
                            generation=generation,
                            key=record_key,
                            outcome="corrupt",
                            reason="undecodable",
                        )
                    drop_subject = self._watch_subject_drop(pipe, course_id, old, new)
                    if new is not None and new.slug:
                        owner = _opt_bytes(pipe.hget(self._keys.slug_index(), new.slug))
                        if owner is not None and owner.decode() != course_id:
                            _log.warning(
                                "course slug taken over from another course",
                                course_id=course_id,
                                generation=generation,
                                slug=new.slug,
                                previous_course_id=owner.decode(),
                                outcome="slug_conflict",
                            )
                    pipe.multi()
                    self._queue_index_changes(pipe, course_id, old, new, drop_subject)
                    if new is None:
                        pipe.delete(record_key)
                    else:
                        pipe.set(record_key, new.dumps(generation))
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue
                except redis.ResponseError as exc:
                    if not _is_wrongtype(exc) or not self._repair_damaged(course_id, old, new):
                        raise
        _log.warning(
            "bundle indexes not updated: kept changing",
            course_id=course_id,
            generation=generation,
            outcome="index_sync_gave_up",
        )
        return False

    def _repair_damaged(
        self, course_id: str, old: _Contribution | None, new: _Contribution | None
    ) -> bool:
        """After a WRONGTYPE in an index sync: replace every damaged key it touches; True if any."""
        record_key = self._keys.course_indexes(course_id)
        expected: dict[str, str] = {record_key: "string"}
        for contribution in (old, new):
            if contribution is not None:
                for key, _member, value in contribution.entries(self._keys, course_id):
                    expected[key] = "set" if value is None else "hash"
        names = list(expected)
        pipe = self._redis.pipeline(transaction=False)
        for key in names:
            pipe.type(key)
        found = [_text(t) if isinstance(t, bytes) else str(t) for t in pipe.execute()]
        damaged = [k for k, t in zip(names, found, strict=True) if t not in (expected[k], "none")]
        for key in damaged:
            if key == record_key:
                self._redis.delete(key)
                _log.warning(
                    "course index record of the wrong type; dropped",
                    course_id=course_id,
                    key=key,
                    outcome="corrupt",
                    reason="wrongtype",
                )
            else:
                self.repair_index(key)
        return bool(damaged)

    def repair_index(self, key: str) -> int:
        """Replace a damaged cross-course index key with entries derived from the course records.

        Each course remembers what it contributed (``course_indexes``), so an index key can be
        rebuilt without OneRoster. Returns how many entries were restored.
        """
        entries: list[tuple[str, str | None]] = []
        pattern = self._keys.course_indexes("*")
        record_keys = sorted(self._redis.scan_iter(match=pattern, count=1000))
        pipe = self._redis.pipeline(transaction=False)
        for record_key in record_keys:
            pipe.get(record_key)
        for record_key, raw in zip(record_keys, pipe.execute(raise_on_error=False), strict=True):
            found = _Contribution.loads(raw if isinstance(raw, bytes) else None)
            course_id = self._keys.course_of_indexes(_text(record_key))
            if found is None or course_id is None:
                continue
            entries += [(m, v) for k, m, v in found.entries(self._keys, course_id) if k == key]
        with self._redis.pipeline(transaction=True) as tx:
            tx.delete(key)
            for member, value in entries:
                if value is None:
                    tx.sadd(key, member)
                else:
                    tx.hset(key, member, value)
            tx.execute()
        _log.warning(
            "damaged index rebuilt from the course records",
            key=key,
            entries=len(entries),
            outcome="index_repaired",
        )
        return len(entries)

    def _watch_subject_drop(
        self,
        pipe: redis.client.Pipeline,
        course_id: str,
        old: _Contribution | None,
        new: _Contribution | None,
    ) -> bool:
        """Whether leaving the old subject empties it (watched, so a concurrent join aborts)."""
        if old is None or not old.subject or (new is not None and new.subject == old.subject):
            return False
        subject_key = self._keys.subject_index(old.subject)
        _watch(pipe, subject_key)
        count = cast(int, pipe.scard(subject_key))
        return count == 0 or (count == 1 and bool(pipe.sismember(subject_key, course_id)))

    def _queue_index_changes(
        self,
        pipe: redis.client.Pipeline,
        course_id: str,
        old: _Contribution | None,
        new: _Contribution | None,
        drop_subject: bool,
    ) -> None:
        keys = self._keys
        if old is not None:
            if old.slug and (new is None or new.slug != old.slug):
                self._hdel_if_eq(keys=[keys.slug_index()], args=[old.slug, course_id], client=pipe)
            if old.subject and (new is None or new.subject != old.subject):
                pipe.srem(keys.subject_index(old.subject), course_id)
                if drop_subject:
                    pipe.srem(keys.subjects(), old.subject)
            gone = old.resources - (new.resources if new is not None else frozenset())
            for resource_id in sorted(gone):
                pipe.srem(keys.resource_index(resource_id), course_id)
        if new is None:
            pipe.srem(keys.courses(), course_id)
            return
        if new.slug:
            pipe.hset(keys.slug_index(), new.slug, course_id)
        if new.subject:
            pipe.sadd(keys.subject_index(new.subject), course_id)
            pipe.sadd(keys.subjects(), new.subject)
        # Every resource is (re-)added, not only new ones, so a lost index entry heals itself.
        for resource_id in sorted(new.resources):
            pipe.sadd(keys.resource_index(resource_id), course_id)
        pipe.sadd(keys.courses(), course_id)

    # --- reading ------------------------------------------------------------------------------
    # Every read raises ``BundleCorrupt`` for a damaged key rather than answering with it.
    def generation(self, course_id: str) -> int | None:
        """The stored generation (one HMGET); None when absent or tombstoned."""
        key = self._keys.bundle(course_id)
        try:
            value, deleted = cast(
                list[bytes | None], self._redis.hmget(key, ["generation", "deleted"])
            )
        except redis.ResponseError as exc:
            if _is_wrongtype(exc):
                raise _wrongtype(key, exc, course_id) from exc
            raise
        if value is None or deleted == b"1":
            return None
        if not value.isdigit():
            raise BundleCorrupt(
                "stored generation is unreadable", course_id=course_id, key=key, reason="meta"
            )
        return int(value)

    def meta(self, course_id: str) -> BundleMeta | None:
        """The stored bundle's metadata, without its bytes."""
        key = self._keys.bundle(course_id)
        try:
            values = self._redis.hmget(key, list(_META_FIELDS))
        except redis.ResponseError as exc:
            if _is_wrongtype(exc):
                raise _wrongtype(key, exc, course_id) from exc
            raise
        return _meta(cast(list[bytes | None], values), course_id, key)

    def metas(
        self, course_ids: Sequence[str], *, damaged: list[BundleCorrupt] | None = None
    ) -> list[BundleMeta]:
        """Metadata of every live bundle among ``course_ids`` (in that order), in one round trip.

        A damaged course is left out (logged, and appended to ``damaged`` when given), so one bad
        key cannot take a whole listing or a reconcile pass down.
        """
        pipe = self._redis.pipeline(transaction=False)
        for course_id in course_ids:
            pipe.hmget(self._keys.bundle(course_id), list(_META_FIELDS))
        found: list[BundleMeta] = []
        for course_id, values in zip(course_ids, pipe.execute(raise_on_error=False), strict=True):
            key = self._keys.bundle(course_id)
            try:
                if isinstance(values, redis.ResponseError):
                    if not _is_wrongtype(values):
                        raise values
                    raise _wrongtype(key, values, course_id)
                meta = _meta(cast(list[bytes | None], values), course_id, key)
            except BundleCorrupt as exc:
                _log.warning(
                    "damaged bundle left out of a listing",
                    course_id=course_id,
                    key=key,
                    outcome="corrupt",
                    reason=exc.context.get("reason"),
                )
                if damaged is not None:
                    damaged.append(exc)
                continue
            if meta is not None:
                found.append(meta)
        return found

    def read(
        self, course_id: str, encoding: Encoding = "identity"
    ) -> tuple[BundleMeta, bytes] | None:
        """The bundle's bytes in ``encoding`` with their metadata, from one consistent HMGET.

        The bytes are checked against their stored CRC-32 (bundles stored before checksums
        existed have none and are passed as they are; ``checked_doc`` still decodes them).
        """
        blob_field = _BLOB_FIELD.get(encoding)
        if blob_field is None:
            raise BundleError("unknown bundle encoding", course_id=course_id, encoding=encoding)
        key = self._keys.bundle(course_id)
        try:
            values = cast(
                list[bytes | None],
                self._redis.hmget(key, [*_META_FIELDS, blob_field, _CRC_FIELD[encoding]]),
            )
        except redis.ResponseError as exc:
            if _is_wrongtype(exc):
                raise _wrongtype(key, exc, course_id) from exc
            raise
        meta, blob, crc = _meta(values[:-2], course_id, key), values[-2], values[-1]
        if meta is None or blob is None:
            return None
        if crc is not None and blob_checksum(blob) != _text(crc):
            raise BundleCorrupt(
                "stored bundle bytes fail their checksum",
                course_id=course_id,
                key=key,
                reason="checksum",
                encoding=encoding,
                generation=meta.generation,
                size=len(blob),
            )
        return meta, blob

    def read_doc(self, course_id: str) -> BundleDoc | None:
        """The stored bundle, decoded (``BundleCorrupt`` when it is damaged)."""
        found = self.read(course_id)
        if found is None:
            return None
        return checked_doc(course_id, found[0], found[1], key=self._keys.bundle(course_id))

    def shape(self, course_id: str) -> BundleShape | None:
        """The live bundle's shape (stored beside it; derived from the bundle if older)."""
        key = self._keys.bundle(course_id)
        try:
            raw, deleted = cast(list[bytes | None], self._redis.hmget(key, ["shape", "deleted"]))
        except redis.ResponseError as exc:
            if _is_wrongtype(exc):
                raise _wrongtype(key, exc, course_id) from exc
            raise
        if deleted == b"1":
            return None
        if raw is not None:
            try:
                return BundleShape.loads(raw)
            except ValueError:
                pass  # damaged: derive it from the bundle itself
        doc = self.read_doc(course_id)
        return None if doc is None else BundleShape.of(doc)

    def digest(self, course_id: str) -> str | None:
        """The live bundle's content digest (generation and build time left out)."""
        raw = cast(bytes | None, self._redis.hget(self._keys.bundle(course_id), "digest"))
        return None if raw is None else raw.decode()

    def kept(self, course_id: str) -> list[KeptGeneration]:
        """The course's kept earlier generations, newest first (unreadable entries left out)."""
        raw = cast(dict[bytes, bytes], self._redis.hgetall(self._keys.kept(course_id)))
        found: list[KeptGeneration] = []
        for field, value in raw.items():
            name = field.decode()
            if not name.endswith(":meta"):
                continue
            try:
                m = orjson.loads(value)
                found.append(
                    KeptGeneration(
                        generation=int(m["generation"]),
                        built_at=str(m["built_at"]),
                        etag=str(m["etag"]),
                        totals={str(k): int(v) for k, v in orjson.loads(m["totals"]).items()},
                        raw_size=int(m["raw_size"]),
                        zstd_size=int(m["zstd_size"]),
                        stored_at=float(m["stored_at"] or 0),
                    )
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
        return sorted(found, key=lambda g: g.generation, reverse=True)

    def kept_doc(self, course_id: str, generation: int) -> BundleDoc | None:
        """The document of one kept generation (``BundleCorrupt`` when its bytes are damaged)."""
        key = self._keys.kept(course_id)
        blob, meta_raw = cast(
            list[bytes | None],
            self._redis.hmget(key, [str(generation), f"{generation}:meta"]),
        )
        if blob is None or meta_raw is None:
            return None
        try:
            crc = str(orjson.loads(meta_raw).get("zstd_crc", ""))
        except (orjson.JSONDecodeError, AttributeError):
            crc = ""  # damaged meta: the bytes are still checked by decoding them
        if crc and blob_checksum(blob) != crc:
            raise BundleCorrupt(
                "kept bundle bytes fail their checksum",
                course_id=course_id,
                key=key,
                reason="checksum",
                generation=generation,
            )
        try:
            doc = decode_bundle(blob)
        except BundleError as exc:
            raise BundleCorrupt(
                "kept bundle does not decode",
                course_id=course_id,
                key=key,
                reason="undecodable",
                generation=generation,
            ) from exc
        return doc

    def kept_bytes(self, course_id: str) -> int:
        """Bytes Redis uses for the course's kept generations (MEMORY USAGE; 0 if none)."""
        used = self._redis.memory_usage(self._keys.kept(course_id), samples=0)
        return int(cast(int, used) or 0)

    def course_id_for_slug(self, slug: str) -> str | None:
        """The course whose bundle has this slug."""
        key = self._keys.slug_index()
        try:
            value = cast(bytes | None, self._redis.hget(key, slug))
        except redis.ResponseError as exc:
            if _is_wrongtype(exc):
                raise _wrongtype(key, exc) from exc
            raise
        return value.decode() if value is not None else None

    def course_ids_for_subject(self, subject: str) -> list[str]:
        """Ids of the stored courses of one subject, sorted."""
        return self._sorted_members(self._keys.subject_index(subject))

    def course_ids_for_resource(self, resource_id: str) -> list[str]:
        """Ids of the stored courses whose bundle links the resource, sorted."""
        return self._sorted_members(self._keys.resource_index(resource_id))

    def all_course_ids(self) -> list[str]:
        """Ids of every course with a stored bundle, sorted."""
        return self._sorted_members(self._keys.courses())

    def _sorted_members(self, key: str) -> list[str]:
        try:
            members = cast(set[bytes], self._redis.smembers(key))
        except redis.ResponseError as exc:
            if _is_wrongtype(exc):
                raise _wrongtype(key, exc) from exc
            raise
        return sorted(member.decode() for member in members)
