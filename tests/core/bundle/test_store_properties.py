"""Fencing as a property: whatever order fenced writes land in, the newest generation wins."""

from __future__ import annotations

from functools import cache

import fakeredis
from hypothesis import given, settings
from hypothesis import strategies as st

from core.bundle.codec import EncodedBundle, encode_bundle
from core.bundle.model import BundleDoc
from core.bundle.store import BundleStore
from core.keys import Keys
from tests.core.bundle.test_codec import make_doc


@cache
def _bundle(generation: int) -> tuple[BundleDoc, EncodedBundle]:
    # Each generation's bundle differs in content (slug, one title), not only in its number.
    doc = make_doc(generation=generation, slug=f"slug-{generation}", title=f"Course v{generation}")
    return doc, encode_bundle(doc)


@settings(max_examples=150, deadline=None)
@given(order=st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=25))
def test_any_write_order_leaves_the_highest_generation_and_its_bytes(order: list[int]) -> None:
    store = BundleStore(fakeredis.FakeRedis(server=fakeredis.FakeServer()), Keys("prop:"))
    highest = 0
    for generation in order:
        doc, encoded = _bundle(generation)
        result = store.write(doc["courseId"], doc, encoded)
        assert result.stored == (generation > highest)
        highest = max(highest, generation)
        assert result.stored_generation == highest

    found = store.read("course-42")
    assert found is not None
    meta, body = found
    assert meta.generation == highest
    assert body == _bundle(highest)[1].json
    assert meta.etag == _bundle(highest)[1].etag
    assert store.course_id_for_slug(f"slug-{highest}") == "course-42"
    stale_slugs = {f"slug-{g}" for g in order} - {f"slug-{highest}"}
    assert all(store.course_id_for_slug(slug) is None for slug in stale_slugs)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), rebuilds=st.integers(min_value=1, max_value=8))
def test_rebuilds_fenced_before_a_delete_never_resurrect_the_course(
    data: st.DataObject, rebuilds: int
) -> None:
    store = BundleStore(fakeredis.FakeRedis(server=fakeredis.FakeServer()), Keys("prop:"))
    taken = [store.next_generation("course-42") for _ in range(rebuilds)]
    store.delete("course-42")

    for generation in data.draw(st.permutations(taken)):
        doc, encoded = _bundle(generation)
        assert store.write(doc["courseId"], doc, encoded).stored is False

    assert store.read("course-42") is None
    assert store.all_course_ids() == []
