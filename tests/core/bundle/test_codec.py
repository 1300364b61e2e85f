"""The codec: one JSON serialisation, gzip and zstd of the same bytes, a content ETag."""

from __future__ import annotations

import copy
import gzip
import hashlib
import re

import pytest
import zstandard

from core.bundle.codec import decode_bundle, encode_bundle
from core.bundle.model import PATH_SEGMENT, BundleDoc, Kind, LessonEntry, ResourceEntry, UnitEntry
from core.errors import BundleError

_TOPICS = [
    "Ratios and rates",
    "Arithmetic with rational numbers",
    "Rates and percentages",
    "Exponents and order of operations",
    "Negative numbers",
    "Variables and expressions",
    "Equations and inequalities",
    "Plane figures",
    "Coordinate plane",
    "Data and statistics",
    "Surface area and volume",
    "Dividing fractions",
]
_STEMS = [
    "Intro to",
    "Understanding",
    "Visualizing",
    "Solving problems with",
    "Comparing",
    "Word problems:",
    "Worked example:",
    "Review of",
    "Modeling",
    "Reasoning about",
]
_KINDS: list[Kind] = ["video", "article", "exercise", "video", "exercise"]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _sid(*parts: object) -> str:
    """A realistic-looking opaque sourcedId (hex), stable for the same parts."""
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()[:24]


def make_doc(
    course_id: str = "course-42",
    generation: int = 1,
    *,
    units: int = 2,
    lessons: int = 2,
    resources: int = 3,
    slug: str = "cc-sixth-grade-math",
    subject: str = "math",
    title: str = "6th grade math",
    challenge: bool = True,
) -> BundleDoc:
    """A valid bundle shaped like a real course (units x lessons x resources, plus a challenge).

    Resource ids are ``{course_id}-r{unit}.{lesson}.{resource}``; the challenge's is
    ``{course_id}-challenge``.
    """
    unit_list: list[UnitEntry] = []
    xp_total = 0
    resource_total = 0
    for u in range(1, units + 1):
        unit_title = _TOPICS[(u - 1) % len(_TOPICS)] + (f" {u}" if u > len(_TOPICS) else "")
        unit_slug = _slug(unit_title)
        lesson_list: list[LessonEntry] = []
        for le in range(1, lessons + 1):
            lesson_title = f"{_STEMS[(le - 1) % len(_STEMS)]} {unit_title.lower()}"
            lesson_slug = _slug(lesson_title)
            res_list: list[ResourceEntry] = []
            for r in range(1, resources + 1):
                kind: Kind = "quiz" if r == resources and le == lessons else _KINDS[r % 5]
                res_title = f"{_STEMS[(r + le) % len(_STEMS)]} {unit_title.lower()} part {r}"
                res_slug = _slug(res_title)
                xp = 10 if kind in ("exercise", "quiz") else 2
                entry: ResourceEntry = {
                    "componentResourceId": _sid(course_id, "cr", u, le, r),
                    "resourceId": f"{course_id}-r{u}.{le}.{r}",
                    "slug": res_slug,
                    "title": res_title,
                    "kind": kind,
                    "sortOrder": r,
                    "xp": xp,
                    "path": f"/{subject}/{slug}/{unit_slug}/{lesson_slug}/"
                    f"{PATH_SEGMENT[kind]}/{res_slug}",
                }
                if kind == "video":
                    entry["youtubeId"] = _sid("yt", course_id, u, le, r)[:11]
                elif kind in ("exercise", "quiz"):
                    entry["questionCount"] = 4 + (u * le * r) % 9
                else:
                    entry["url"] = f"https://cdn.example.org/articles/{_sid('a', u, le, r)}.html"
                res_list.append(entry)
                xp_total += xp
                resource_total += 1
            lesson_list.append(
                {
                    "sourcedId": _sid(course_id, "lesson", u, le),
                    "slug": lesson_slug,
                    "title": lesson_title,
                    "sortOrder": le,
                    "resources": res_list,
                }
            )
        unit_list.append(
            {
                "sourcedId": _sid(course_id, "unit", u),
                "slug": unit_slug,
                "title": unit_title,
                "sortOrder": u,
                "lessons": lesson_list,
            }
        )
    course_challenge: ResourceEntry | None = None
    if challenge:
        course_challenge = {
            "componentResourceId": _sid(course_id, "cr-challenge"),
            "resourceId": f"{course_id}-challenge",
            "slug": f"{slug}-course-challenge",
            "title": f"{title} course challenge",
            "kind": "course-challenge",
            "sortOrder": units + 1,
            "xp": 50,
            "path": f"/{subject}/{slug}/test/{slug}-course-challenge",
            "questionCount": 30,
        }
        xp_total += 50
        resource_total += 1
    return {
        "schemaVersion": 1,
        "courseId": course_id,
        "generation": generation,
        "builtAt": "2026-11-22T10:15:03.420Z",
        "course": {"sourcedId": course_id, "slug": slug, "title": title, "subject": subject},
        "units": unit_list,
        "courseChallenge": course_challenge,
        "totals": {
            "units": units,
            "lessons": units * lessons,
            "resources": resource_total,
            "xp": xp_total,
        },
        "skipped": 0,
    }


def test_json_round_trips_to_the_same_document() -> None:
    doc = make_doc()
    assert decode_bundle(encode_bundle(doc).json) == doc


def test_gzip_and_zstd_hold_exactly_the_json_bytes() -> None:
    encoded = encode_bundle(make_doc())
    assert gzip.decompress(encoded.gzip) == encoded.json
    assert zstandard.ZstdDecompressor().decompress(encoded.zstd) == encoded.json


def test_decode_accepts_every_stored_encoding() -> None:
    doc = make_doc()
    encoded = encode_bundle(doc)
    assert decode_bundle(encoded.gzip) == doc
    assert decode_bundle(encoded.zstd) == doc


def test_same_document_gives_identical_bytes_and_etag() -> None:
    first = encode_bundle(make_doc())
    second = encode_bundle(copy.deepcopy(make_doc()))
    assert first == second


def test_etag_is_strong_quoted_and_follows_content() -> None:
    doc = make_doc()
    etag = encode_bundle(doc).etag
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    changed = copy.deepcopy(doc)
    changed["units"][0]["lessons"][0]["resources"][0]["title"] = "Renamed video"
    assert encode_bundle(changed).etag != etag
    assert encode_bundle({**doc, "generation": 2}).etag != etag


def test_compressed_forms_are_much_smaller_for_a_realistic_course() -> None:
    encoded = encode_bundle(make_doc(units=10, lessons=5, resources=10))
    assert len(encoded.gzip) < len(encoded.json) / 3
    assert len(encoded.zstd) < len(encoded.json) / 3


def test_json_keeps_the_contract_field_order() -> None:
    raw = encode_bundle(make_doc()).json
    assert raw.startswith(b'{"schemaVersion":1,"courseId":"course-42","generation":1,')


@pytest.mark.parametrize(
    "data", [b"", b"not json", b"[1,2]", b'{"a":1}', b"\x1f\x8bbroken", b"\x28\xb5\x2f\xfdxx"]
)
def test_garbage_is_a_bundle_error_not_a_crash(data: bytes) -> None:
    with pytest.raises(BundleError):
        decode_bundle(data)
