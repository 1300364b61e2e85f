"""Read routes: bundles, slices, subjects and redirects, with their caching headers."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading

import httpx
import orjson
import pytest

from tests.worker.api.conftest import READ, Api, MakeApi, eventually

LESSON = "/v1/courses/course-1/units/u0/lessons/l0"
BUNDLE = "/v1/courses/course-1/bundle"


def raw_get(api: Api, path: str, headers: dict[str, str]) -> tuple[httpx.Response, bytes]:
    """The response and its body exactly as sent (no content decoding; identity by default)."""
    headers = {"Accept-Encoding": "identity", **headers}
    with api.client.stream("GET", path, headers=headers) as resp:
        return resp, b"".join(resp.iter_raw())


def test_whole_bundle_is_the_stored_bytes_with_bundle_headers(api: Api) -> None:
    doc = api.put()
    resp, body = raw_get(api, BUNDLE, READ)
    meta, stored = api.store.read("course-1", "identity") or (None, b"")
    assert resp.status_code == 200
    assert body == stored
    assert orjson.loads(body) == doc
    assert resp.headers["etag"] == meta.etag
    assert resp.headers["x-bundle-generation"] == str(doc["generation"])
    assert resp.headers["x-bundle-built-at"] == doc["builtAt"]
    assert "x-bundle-stale" not in resp.headers
    assert resp.headers["content-type"] == "application/json"


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_whole_bundle_honours_accept_encoding_with_the_stored_compressed_bytes(
    api: Api, coding: str
) -> None:
    api.put()
    resp, body = raw_get(api, BUNDLE, {**READ, "Accept-Encoding": coding})
    _, stored = api.store.read("course-1", coding) or (None, b"")
    assert resp.headers["content-encoding"] == coding
    assert resp.headers["vary"] == "Accept-Encoding"
    assert body == stored


def test_zstd_refused_with_q0_falls_back_to_gzip(api: Api) -> None:
    api.put()
    resp, _ = raw_get(api, BUNDLE, {**READ, "Accept-Encoding": "zstd;q=0, gzip"})
    assert resp.headers["content-encoding"] == "gzip"


def test_bundle_by_slug_is_the_same_bundle(api: Api) -> None:
    api.put()
    by_id = api.client.get(BUNDLE, headers=READ)
    by_slug = api.client.get("/v1/courses/by-slug/algebra/bundle", headers=READ)
    assert by_slug.status_code == 200
    assert by_slug.content == by_id.content
    assert by_slug.headers["etag"] == by_id.headers["etag"]


def test_unknown_slug_is_404_problem(api: Api) -> None:
    resp = api.client.get("/v1/courses/by-slug/nope/bundle", headers=READ)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"


def test_unit_is_exactly_the_unit_in_the_bundle(api: Api) -> None:
    doc = api.put()
    resp = api.client.get("/v1/courses/course-1/units/u1", headers=READ)
    assert resp.status_code == 200
    assert resp.json() == doc["units"][1]
    assert resp.headers["x-bundle-generation"] == str(doc["generation"])


def test_lesson_is_the_lesson_plus_its_unit_slug(api: Api) -> None:
    doc = api.put()
    resp = api.client.get("/v1/courses/course-1/units/u1/lessons/l1", headers=READ)
    assert resp.json() == {**doc["units"][1]["lessons"][1], "unitSlug": "u1"}
    assert resp.headers["etag"].startswith('"')
    assert resp.headers["x-bundle-built-at"] == doc["builtAt"]


def test_resource_carries_where_it_sits(api: Api) -> None:
    doc = api.put()
    resp = api.client.get("/v1/courses/course-1/resources/course-1-u1-l0-r1", headers=READ)
    entry = doc["units"][1]["lessons"][0]["resources"][1]
    assert resp.json() == {**entry, "unitSlug": "u1", "lessonSlug": "l0"}
    assert resp.json()["componentResourceId"] == "cr-course-1-u1-l0-r1"


def test_course_challenge_resource_sits_in_no_unit(api: Api) -> None:
    doc = api.put()
    resp = api.client.get("/v1/courses/course-1/resources/course-1-challenge", headers=READ)
    assert resp.json() == {**doc["courseChallenge"], "unitSlug": None, "lessonSlug": None}


@pytest.mark.parametrize(
    "path",
    [
        "/v1/courses/course-1/units/nope",
        "/v1/courses/course-1/units/u0/lessons/nope",
        "/v1/courses/course-1/units/nope/lessons/l0",
        "/v1/courses/course-1/resources/nope",
    ],
)
def test_missing_parts_of_a_known_course_are_404(api: Api, path: str) -> None:
    api.put()
    resp = api.client.get(path, headers=READ)
    assert resp.status_code == 404
    assert resp.json()["status"] == 404
    assert resp.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("path", [LESSON, BUNDLE, "/v1/courses/course-1/units/u0"])
def test_current_etag_answers_304_without_a_body(api: Api, path: str) -> None:
    api.put()
    first = api.client.get(path, headers=READ)
    etag = first.headers["etag"]
    for given in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = api.client.get(path, headers={**READ, "If-None-Match": given})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["x-bundle-generation"] == first.headers["x-bundle-generation"]
    other = api.client.get(path, headers={**READ, "If-None-Match": '"other"'})
    assert other.status_code == 200


def test_etag_changes_when_the_course_is_rebuilt(api: Api) -> None:
    api.put()
    first = api.client.get(LESSON, headers=READ)
    api.put()  # same content, next generation
    following = str(int(first.headers["x-bundle-generation"]) + 1)
    assert eventually(
        lambda: api.client.get(LESSON, headers=READ).headers["x-bundle-generation"] == following
    )
    again = api.client.get(LESSON, headers={**READ, "If-None-Match": first.headers["etag"]})
    assert again.status_code == 200


def test_a_small_slice_is_identity_a_large_one_gzip(api: Api) -> None:
    api.put(lessons=12, per_lesson=10)
    lesson, _ = raw_get(api, LESSON, {**READ, "Accept-Encoding": "gzip"})
    unit, body = raw_get(api, "/v1/courses/course-1/units/u0", {**READ, "Accept-Encoding": "gzip"})
    assert "content-encoding" not in lesson.headers
    assert unit.headers["content-encoding"] == "gzip"
    assert unit.headers["content-length"] == str(len(body))
    plain, _ = raw_get(api, "/v1/courses/course-1/units/u0", READ)
    assert "content-encoding" not in plain.headers


def test_never_built_course_is_built_on_first_read(api: Api) -> None:
    api.known()
    resp = api.client.get(LESSON, headers=READ)
    assert resp.status_code == 200
    assert api.upstream.calls["course-1"] == 1
    assert api.store.generation("course-1") == int(resp.headers["x-bundle-generation"])


def test_concurrent_first_reads_build_once(api: Api) -> None:
    api.known()
    api.upstream.delay_s = 0.2
    app = api.client.app

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answers = await asyncio.gather(*(client.get(LESSON, headers=READ) for _ in range(12)))
        return [a.status_code for a in answers]

    assert asyncio.run(burst()) == [200] * 12
    assert api.upstream.calls["course-1"] == 1


@pytest.mark.parametrize("coalesce", [True, False])
def test_a_stampede_on_one_cold_course_does_not_hold_up_other_courses(
    make_api: MakeApi, coalesce: bool
) -> None:
    api = make_api(coalesce=coalesce)
    api.known("course-1")
    api.known("course-2", slug="geometry")
    release = threading.Event()
    api.upstream.hold["course-1"] = release
    other_lesson = LESSON.replace("course-1", "course-2")

    async def scenario() -> tuple[bool, list[int]]:
        transport = httpx.ASGITransport(app=api.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            stampede = [asyncio.ensure_future(client.get(LESSON, headers=READ)) for _ in range(60)]
            while api.upstream.calls["course-1"] == 0:  # the one build is under way, held
                await asyncio.sleep(0.005)
            other = asyncio.ensure_future(client.get(other_lesson, headers=READ))
            done, _ = await asyncio.wait({other}, timeout=2.0)
            served_meanwhile = other in done and other.result().status_code == 200
            release.set()
            answers = await asyncio.gather(*stampede)
            await other
        return served_meanwhile, [a.status_code for a in answers]

    served_meanwhile, codes = asyncio.run(scenario())

    assert codes == [200] * 60
    assert api.upstream.calls["course-1"] == 1
    # 60 requests each holding a pool thread (40) would queue course-2 behind the held build
    assert served_meanwhile is coalesce


def test_unknown_course_is_404_and_remembered(make_api: MakeApi) -> None:
    api = make_api()
    first = api.client.get("/v1/courses/ghost/bundle", headers=READ)
    second = api.client.get("/v1/courses/ghost/units/u0", headers=READ)
    assert (first.status_code, second.status_code) == (404, 404)
    assert api.upstream.calls["ghost"] == 1
    other_process = make_api()  # shares Redis: the memory of "unknown" is shared too
    assert other_process.client.get("/v1/courses/ghost/bundle", headers=READ).status_code == 404
    assert other_process.upstream.calls["ghost"] == 0


def test_old_bundle_is_served_stale_while_oneroster_is_down(api: Api) -> None:
    two_hours_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    doc = api.put(built_at=two_hours_ago)
    api.upstream.down = True
    resp = api.client.get(LESSON, headers=READ)
    assert resp.status_code == 200
    assert resp.headers["x-bundle-stale"] == "true"
    assert resp.headers["x-bundle-generation"] == str(doc["generation"])
    assert eventually(lambda: api.upstream.calls["course-1"] >= 1)  # the refresh was tried
    again = api.client.get(BUNDLE, headers=READ)
    assert again.headers["x-bundle-stale"] == "true"


def test_stale_bundle_is_refreshed_in_the_background(api: Api) -> None:
    api.put(built_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    first = api.client.get(LESSON, headers=READ)
    assert first.headers["x-bundle-stale"] == "true"
    following = str(int(first.headers["x-bundle-generation"]) + 1)

    def refreshed() -> bool:
        resp = api.client.get(LESSON, headers=READ)
        return "x-bundle-stale" not in resp.headers and (
            resp.headers["x-bundle-generation"] == following
        )

    assert eventually(refreshed)


def test_unknown_course_while_oneroster_is_down_is_503(api: Api) -> None:
    api.upstream.down = True
    resp = api.client.get(BUNDLE, headers=READ)
    assert resp.status_code == 503
    assert resp.headers["retry-after"]
    assert resp.headers["content-type"] == "application/problem+json"


def test_deleted_course_answers_404_after_the_notice(api: Api) -> None:
    api.put()
    assert api.client.get(LESSON, headers=READ).status_code == 200
    del api.upstream.courses["course-1"]
    api.store.delete("course-1")
    assert eventually(lambda: api.client.get(LESSON, headers=READ).status_code == 404)


def test_subject_lists_built_courses_ordered_by_slug(api: Api) -> None:
    api.put("c-b", slug="b-course")
    api.put("c-a", slug="a-course")
    api.put("c-s", slug="bio", subject="science")
    resp = api.client.get("/v1/subjects/math/courses", headers=READ)
    body = resp.json()
    assert body["subject"] == "math"
    assert [c["slug"] for c in body["courses"]] == ["a-course", "b-course"]
    assert set(body["courses"][0]) == {"courseId", "slug", "title", "generation", "totals"}
    assert body["courses"][0]["totals"]["units"] == 2
    again = api.client.get(
        "/v1/subjects/math/courses", headers={**READ, "If-None-Match": resp.headers["etag"]}
    )
    assert again.status_code == 304


def test_subject_listing_follows_rebuilds(api: Api) -> None:
    api.put("c-a", slug="a-course")
    first = api.client.get("/v1/subjects/math/courses", headers=READ).json()
    api.put("c-z", slug="z-course")
    assert eventually(
        lambda: (
            len(api.client.get("/v1/subjects/math/courses", headers=READ).json()["courses"]) == 2
        )
    )
    assert len(first["courses"]) == 1


def test_unknown_subject_is_an_empty_list(api: Api) -> None:
    resp = api.client.get("/v1/subjects/art/courses", headers=READ)
    assert resp.status_code == 200
    assert resp.json() == {"subject": "art", "courses": []}


REDIRECT = "/v1/redirects/assessment"


def test_redirect_to_a_quiz(api: Api) -> None:
    stored = api.put()
    params = {
        "subject": "math",
        "course": "algebra",
        "unit": "u1",
        "kind": "quiz",
        "slug": "quiz-1",
    }
    resp = api.client.get(REDIRECT, params=params, headers=READ)
    assert resp.status_code == 200
    assert resp.json() == {"path": "/math/algebra/u1/l0/quiz/quiz-1"}
    assert resp.headers["x-bundle-generation"] == str(stored["generation"])


def test_redirect_to_the_course_challenge_has_no_unit(api: Api) -> None:
    api.put()
    params = {
        "subject": "math",
        "course": "algebra",
        "kind": "course-challenge",
        "slug": "challenge",
    }
    resp = api.client.get(REDIRECT, params=params, headers=READ)
    assert resp.json() == {"path": "/math/algebra/test/challenge"}


def test_ambiguous_redirect_is_409_with_candidates(api: Api) -> None:
    api.put(ambiguous_quiz=True)
    params = {
        "subject": "math",
        "course": "algebra",
        "unit": "u0",
        "kind": "quiz",
        "slug": "quiz-1",
    }
    resp = api.client.get(REDIRECT, params=params, headers=READ)
    assert resp.status_code == 409
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["candidates"] == [
        "/math/algebra/u0/l0/quiz/quiz-1",
        "/math/algebra/u0/l1/quiz/quiz-1",
    ]


@pytest.mark.parametrize(
    "params",
    [
        {"subject": "math", "course": "algebra", "unit": "u0", "kind": "quiz", "slug": "nope"},
        {"subject": "science", "course": "algebra", "unit": "u0", "kind": "quiz", "slug": "quiz-1"},
        {"subject": "math", "course": "nope", "unit": "u0", "kind": "quiz", "slug": "quiz-1"},
        {"subject": "math", "course": "algebra", "kind": "quiz", "slug": "quiz-1"},
    ],
)
def test_redirect_that_matches_nothing_is_404(api: Api, params: dict[str, str]) -> None:
    api.put()
    resp = api.client.get(REDIRECT, params=params, headers=READ)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "params",
    [
        {"subject": "math", "course": "algebra", "unit": "u0", "kind": "video", "slug": "v0"},
        {"subject": "math", "unit": "u0", "kind": "quiz", "slug": "quiz-1"},
        {"subject": "math", "course": "a b", "unit": "u0", "kind": "quiz", "slug": "quiz-1"},
    ],
)
def test_redirect_with_bad_parameters_is_422(api: Api, params: dict[str, str]) -> None:
    resp = api.client.get(REDIRECT, params=params, headers=READ)
    assert resp.status_code == 422
    problem = resp.json()
    assert problem["errors"]
    assert {"in", "name", "reason"} <= set(problem["errors"][0])


@pytest.mark.parametrize(
    "path",
    [
        "/v1/courses/bad%20id/bundle",
        "/v1/courses/" + "x" * 201 + "/bundle",
        "/v1/courses/course-1/resources/r%24",
        "/v1/courses/course-1/units/a%25b",
    ],
)
def test_ids_and_slugs_are_checked_before_use(api: Api, path: str) -> None:
    resp = api.client.get(path, headers=READ)
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    assert api.upstream.calls.total() == 0


def test_cold_builds_are_limited_per_token_but_built_courses_never_are(
    make_api: MakeApi,
) -> None:
    api = make_api(cold_builds_per_token=2)
    api.put("built")
    for course_id in ("cold-1", "cold-2", "cold-3"):
        api.known(course_id)
    get = api.client.get
    assert get("/v1/courses/cold-1/bundle", headers=READ).status_code == 200
    assert get("/v1/courses/cold-2/bundle", headers=READ).status_code == 200

    refused = get("/v1/courses/cold-3/bundle", headers=READ)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["type"] == "urn:course-bundles:problem:rate-limited"
    probe = get("/v1/courses/never-heard-of/bundle", headers=READ)
    assert probe.status_code == 429  # probing unknown ids spends the same allowance
    assert api.upstream.calls["cold-3"] == api.upstream.calls["never-heard-of"] == 0

    for _ in range(10):  # built courses, in the store or already read, stay readable
        assert get("/v1/courses/built/bundle", headers=READ).status_code == 200
        assert get("/v1/courses/cold-1/units/u0", headers=READ).status_code == 200
    other = {"Authorization": "Bearer all-token"}
    assert get("/v1/courses/cold-3/bundle", headers=other).status_code == 200
