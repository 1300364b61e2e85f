"""Damaged stored bundles: a 503 problem with Retry-After, never the damage with a 200 and ETag."""

from __future__ import annotations

import time

import fakeredis
import orjson
import pytest

from core.pipeline.debounce import Debouncer
from core.pipeline.schedule import Schedule, rebuild_entry_id
from tests.worker.api.conftest import READ, Api

BUNDLE = "/v1/courses/course-1/bundle"
LESSON = "/v1/courses/course-1/units/u0/lessons/l0"


def _truncate(api: Api, field: str) -> None:
    client = fakeredis.FakeRedis(server=api.server)
    key = api.services.keys.bundle("course-1")
    good = client.hget(key, field)
    assert isinstance(good, bytes)
    client.hset(key, field, good[: len(good) // 2])


def _assert_corrupt_problem(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 503
    assert headers["content-type"] == "application/problem+json"
    assert int(headers["retry-after"]) > 0
    assert "etag" not in headers
    problem = orjson.loads(body)
    assert problem["type"].endswith(":bundle-corrupt")
    assert problem["status"] == 503


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_damaged_compressed_bundle_bytes_answer_503(api: Api, coding: str) -> None:
    api.put()
    _truncate(api, coding)
    resp = api.client.get(BUNDLE, headers={**READ, "Accept-Encoding": coding})
    _assert_corrupt_problem(resp.status_code, dict(resp.headers), resp.content)
    assert Debouncer(fakeredis.FakeRedis(server=api.server), api.services.keys).is_dirty("course-1")
    # ...and a worker will rebuild it soon: the API put the rebuild on the durable schedule.
    schedule = Schedule(fakeredis.FakeRedis(server=api.server), api.services.keys)
    due = schedule.due_at(rebuild_entry_id("course-1"))
    assert due is not None and due <= time.time() + 1


def test_a_damaged_bundle_json_answers_503_on_every_route(api: Api) -> None:
    api.put()
    _truncate(api, "json")
    for path in (LESSON, BUNDLE):
        resp = api.client.get(path, headers={**READ, "Accept-Encoding": "identity"})
        _assert_corrupt_problem(resp.status_code, dict(resp.headers), resp.content)


def test_a_bundle_key_of_the_wrong_type_answers_503(api: Api) -> None:
    api.put()
    client = fakeredis.FakeRedis(server=api.server)
    key = api.services.keys.bundle("course-1")
    client.delete(key)
    client.set(key, b"not a hash")
    resp = api.client.get(LESSON, headers=READ)
    _assert_corrupt_problem(resp.status_code, dict(resp.headers), resp.content)


def test_a_damaged_bundle_is_answered_from_its_last_good_generation_when_one_is_kept(
    api: Api,
) -> None:
    first = api.put(units=2)
    api.put(units=3)  # the live generation; the first is kept
    _truncate(api, "json")
    api.upstream.down = True  # no rebuild can repair it yet: readers get the last good one
    for coding in ("identity", "gzip", "zstd"):
        resp = api.client.get(BUNDLE, headers={**READ, "Accept-Encoding": coding})
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-bundle-stale"] == "true"
        assert int(resp.headers["x-bundle-generation"]) == first["generation"]
        assert len(resp.json()["units"]) == 2
    lesson = api.client.get(LESSON, headers=READ)
    assert lesson.status_code == 200 and lesson.headers["x-bundle-stale"] == "true"
    # ...and the damaged course is still rebuilt soon.
    schedule = Schedule(fakeredis.FakeRedis(server=api.server), api.services.keys)
    assert schedule.due_at(rebuild_entry_id("course-1")) is not None
