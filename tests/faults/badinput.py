"""Hypothesis strategies for what careless or hostile producers and clients send.

``bad_events`` draws one malformed event as it would arrive: raw body bytes with a content type
(HTTP), the same bytes or a Python mapping (the Python publisher), or a decoded value put on
the broker straight (what the worker must re-validate). Each one breaks a rule of events.md:
wrong types, missing fields, bad values, too large, too deep, not UTF-8, not JSON, not a JSON
object, or a content type events are not accepted in. ``bad_requests`` draws malformed API
requests: odd paths, query strings and headers.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import strategies as st

MAX_EVENT_BYTES = 64 * 1024
REQUIRED = ("specversion", "id", "source", "type", "subject")
COURSE_TYPES = ("course", "courseComponent", "componentResource")
JSON_CT = "application/json"
SINGLE_CT = "application/cloudevents+json"


@dataclass(frozen=True)
class BadEvent:
    """One malformed event: its decoded form (when it has one) and the bytes and type it arrives
    with over HTTP."""

    kind: str
    body: bytes
    content_type: str
    value: Any = None  # the decoded envelope (None when the body is not JSON)
    has_value: bool = False

    @property
    def brokerable(self) -> bool:
        """Whether the value is an invalid envelope that can travel as a Celery task argument."""
        return self.has_value and self.kind not in ("huge", "raw-deep", "content-type")


def valid_event(
    course_id: str, subject: str | None = None, *, kind: str = "course"
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"valid-{uuid.uuid4().hex}",
        "source": "faults-bad-input",
        "type": f"oneroster.{kind}.updated",
        "subject": subject or course_id,
        "time": "2026-11-22T10:15:03.120Z",
        "data": {"courseId": course_id},
    }


_INTS = st.integers(-(2**63), 2**63 - 1)
_WRONG_VALUES = st.one_of(
    _INTS,
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.lists(_INTS, max_size=3),
    st.dictionaries(st.text(max_size=5), _INTS, max_size=3),
)
_BAD_IDS = st.one_of(
    st.just(""),
    st.just("   "),
    st.text(min_size=129, max_size=300, alphabet="abc"),
    st.text(min_size=1, max_size=20).filter(lambda s: any(c in s for c in " /?#%\"'\\{}é\n\t")),
)
_BAD_REFS = st.one_of(
    st.just(""),
    st.text(min_size=201, max_size=400, alphabet="xyz"),
    st.text(min_size=1, max_size=20).filter(lambda s: any(c in s for c in " /?#%\"'\\{}é*\n")),
)
_BAD_TYPES = st.one_of(
    st.sampled_from(
        [
            "oneroster.course",
            "oneroster.course.updated.extra",
            "course.updated",
            "ONEROSTER.course.updated",
            "oneroster.user.updated",
            "oneroster.course.renamed",
            "oneroster..updated",
            "",
        ]
    ),
    st.text(max_size=40).filter(lambda s: not s.startswith("oneroster.")),
)
_BAD_TIMES = st.sampled_from(
    [
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-02-30T10:00:00Z",
        "2026-01-01T00:00:00",
        "2026-01-01",
        "2026-01-01T25:00:00Z",
        "2026-01-01T10:00:00+24:00",
        "",
    ]
)


def _envelope(course_ids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda c, k: valid_event(c, kind=k),
        st.sampled_from(course_ids),
        st.sampled_from(COURSE_TYPES),
    )


@st.composite
def _wrong_type(draw: st.DrawFn, course_ids: list[str]) -> BadEvent:
    env = draw(_envelope(course_ids))
    field = draw(
        st.sampled_from([*REQUIRED, "time", "datacontenttype", "data", "courseId", "previous"])
    )
    wrong = draw(_WRONG_VALUES)
    if field == "data":
        env["data"] = draw(st.one_of(_INTS, st.text(max_size=5), st.lists(_INTS)))
    elif field == "courseId":
        env["data"]["courseId"] = wrong
    elif field == "previous":
        env["data"]["previousCourseId"] = wrong
    else:
        env[field] = wrong
    return _json_event("wrong-type", env)


@st.composite
def _missing(draw: st.DrawFn, course_ids: list[str]) -> BadEvent:
    env = draw(_envelope(course_ids))
    gone = draw(st.lists(st.sampled_from([*REQUIRED, "courseId"]), min_size=1, unique=True))
    for field in gone:
        if field == "courseId":
            env["data"].pop("courseId")
        else:
            env.pop(field)
    if draw(st.booleans()) and "specversion" in gone:
        env["specversion"] = None  # null is as missing as absent
    return _json_event("missing", env)


@st.composite
def _bad_value(draw: st.DrawFn, course_ids: list[str]) -> BadEvent:
    env = draw(_envelope(course_ids))
    which = draw(
        st.sampled_from(
            ["id", "subject", "courseId", "type", "time", "specversion", "source", "base64"]
        )
    )
    if which == "id":
        env["id"] = draw(_BAD_IDS)
    elif which == "subject":
        env["subject"] = draw(_BAD_REFS)
    elif which == "courseId":
        env["data"]["courseId"] = draw(_BAD_REFS)
    elif which == "type":
        env["type"] = draw(_BAD_TYPES)
    elif which == "time":
        env["time"] = draw(_BAD_TIMES)
    elif which == "specversion":
        env["specversion"] = draw(st.sampled_from(["0.3", "1", "1.0 ", "2.0", ""]))
    elif which == "source":
        env["source"] = draw(st.sampled_from(["", "  ", "\t"]))
    else:
        env["data_base64"] = "eyJjb3Vyc2VJZCI6ICJ4In0="
    return _json_event("bad-value", env)


@st.composite
def _huge(draw: st.DrawFn, course_ids: list[str]) -> BadEvent:
    env = draw(_envelope(course_ids))
    size = draw(st.integers(MAX_EVENT_BYTES + 1, 4 * MAX_EVENT_BYTES))
    env["data"]["padding"] = "x" * size
    return _json_event("huge", env)


@st.composite
def _deep(draw: st.DrawFn, course_ids: list[str]) -> BadEvent:
    env = draw(_envelope(course_ids))
    depth = draw(st.integers(33, 400))
    nested: Any = "bottom"
    for level in range(depth):
        nested = {"n": nested} if level % 2 else [nested]
    env["data"]["deep"] = nested
    # orjson refuses to encode past 255 levels; the standard encoder goes deeper.
    return BadEvent("deep", json.dumps(env).encode(), JSON_CT, env, True)


@st.composite
def _raw_deep(draw: st.DrawFn) -> BadEvent:
    # Past any JSON parser's nesting limit: the body cannot even be decoded.
    depth = draw(st.integers(1_025, 20_000))
    opener = draw(st.sampled_from(["[", '{"a":']))
    closer = "]" if opener == "[" else "}"
    return BadEvent("raw-deep", (opener * depth + "1" + closer * depth).encode(), JSON_CT)


@st.composite
def _not_utf8(draw: st.DrawFn, course_ids: list[str]) -> BadEvent:
    env = draw(_envelope(course_ids))
    body = orjson.dumps(env)
    junk = draw(st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80abc"]))
    at = body.index(b'"source":"') + len(b'"source":"')
    return BadEvent("not-utf8", body[:at] + junk + body[at:], JSON_CT)


@st.composite
def _not_json(draw: st.DrawFn) -> BadEvent:
    body = draw(
        st.one_of(
            st.sampled_from(
                [
                    b"",
                    b"   ",
                    b"{",
                    b'{"specversion": "1.0",}',
                    b"NaN",
                    b"{'single': 'quotes'}",
                    b'{"a": 1} trailing',
                    b"<event/>",
                    b"\x00\x01\x02",
                ]
            ),
            st.binary(min_size=1, max_size=200).filter(lambda b: not _is_json(b)),
        )
    )
    return BadEvent("not-json", body, draw(st.sampled_from([JSON_CT, SINGLE_CT])))


@st.composite
def _not_object(draw: st.DrawFn, course_ids: list[str]) -> BadEvent:
    value = draw(
        st.one_of(
            _INTS,
            st.text(max_size=10),
            st.booleans(),
            st.none(),
            st.lists(_INTS, min_size=1, max_size=3),
            st.just([]),
            st.builds(lambda e: [e, 42], _envelope(course_ids)),
        )
    )
    return _json_event("not-object", value)


@st.composite
def _wrong_content_type(draw: st.DrawFn, course_ids: list[str]) -> BadEvent:
    env = draw(_envelope(course_ids))
    content_type = draw(
        st.one_of(
            st.sampled_from(
                [
                    "text/plain",
                    "application/xml",
                    "multipart/form-data; boundary=x",
                    "application/x-www-form-urlencoded",
                    "application/json; charset=latin-1",
                    "application/cloudevents+json; charset=utf-16",
                    "",
                    "application",
                    "*/*",
                ]
            ),
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz/+-.;= ", max_size=30)
            .map(str.strip)
            .filter(
                lambda t: (
                    t.partition(";")[0].strip().lower()
                    not in (JSON_CT, SINGLE_CT, "application/cloudevents-batch+json")
                )
            ),
        )
    )
    return BadEvent("content-type", orjson.dumps(env), content_type, env, True)


def _is_json(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


def _json_event(kind: str, value: Any) -> BadEvent:
    return BadEvent(kind, orjson.dumps(value), JSON_CT, value, True)


def bad_events(course_ids: list[str]) -> st.SearchStrategy[BadEvent]:
    """Every kind of malformed event, evenly."""
    return st.one_of(
        _wrong_type(course_ids),
        _missing(course_ids),
        _bad_value(course_ids),
        _huge(course_ids),
        _deep(course_ids),
        _raw_deep(),
        _not_utf8(course_ids),
        _not_json(),
        _not_object(course_ids),
        _wrong_content_type(course_ids),
    )


# --- malformed API requests --------------------------------------------------------------------
@dataclass(frozen=True)
class BadRequest:
    method: str
    raw_path: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""


_SEGMENTS = st.one_of(
    st.sampled_from(
        [
            b"..",
            b".",
            b"%2e%2e",
            b"%00",
            b"%ZZ",
            b"%",
            b"%c3%28",
            b"%ff%fe",
            b"course-001",
            b"course-001%2Fbundle",
            b"a" * 5000,
            b"\xc3\xa9",
            b"%F0%9F%92%A9",
            b"{course}",
            b"*",
            b"bundle;x=1",
        ]
    ),
    st.binary(min_size=1, max_size=30).map(lambda b: "".join(f"%{c:02X}" for c in b).encode()),
    st.text(alphabet="abcXYZ019-_.~:@!$&'()*+,;=", min_size=1, max_size=40).map(str.encode),
)
_PREFIXES = [
    b"/v1/courses/{seg}/bundle",
    b"/v1/courses/by-slug/{seg}/bundle",
    b"/v1/courses/course-001/units/{seg}",
    b"/v1/courses/{seg}/units/{seg}/lessons/{seg}",
    b"/v1/courses/course-001/resources/{seg}",
    b"/v1/subjects/{seg}/courses",
    b"/v1/attempts/{seg}/{seg}",
    b"/v1/redirects/assessment",
    b"/v1/{seg}",
    b"/{seg}",
    b"/v1/events",
    b"/healthz",
]
_QUERY = st.one_of(
    st.just(b""),
    st.lists(
        st.tuples(
            st.sampled_from(
                [b"subject", b"course", b"unit", b"kind", b"slug", b"attempt", b"x", b"", b"%00"]
            ),
            st.one_of(
                st.sampled_from(
                    [
                        b"",
                        b"quiz",
                        b"-1",
                        b"0",
                        b"1e9",
                        b"99999999999999999999",
                        b"%ZZ",
                        b"a" * 3000,
                    ]
                ),
                st.text(alphabet="abc123%&=+;", max_size=20).map(str.encode),
            ),
        ),
        max_size=6,
    ).map(lambda pairs: b"&".join(k + b"=" + v for k, v in pairs)),
)
_HEADER_VALUES = st.one_of(
    st.sampled_from(
        [b"", b"*", b"W/", b'W/"x", *', b'"' * 100, b"gzip;q=abc, zstd;q=-1, br;q=2", b"\xff\xfe"]
    ),
    st.binary(max_size=200).filter(lambda b: not any(c in b for c in b"\r\n\x00")),
    st.just(b"x" * 20_000),
)
_HEADER_NAMES = st.sampled_from(
    [
        b"if-none-match",
        b"accept-encoding",
        b"x-request-id",
        b"accept",
        b"content-type",
        b"range",
        b"if-modified-since",
        b"x-forwarded-for",
        b"cookie",
    ]
)


def bad_requests(token: str) -> st.SearchStrategy[BadRequest]:
    """Requests with odd paths, query strings and headers (well-formed HTTP otherwise)."""
    auth = st.sampled_from(
        [
            b"Bearer " + token.encode(),
            b"bearer " + token.encode(),
            b"",
            b"Bearer",
            b"Bearer ",
            b"Basic dXNlcjpwYXNz",
            b"Bearer " + b"t" * 10_000,
            b"Bearer \xff\xfe",
            b"Bearer " + token.encode() + b" extra",
        ]
    )

    @st.composite
    def build(draw: st.DrawFn) -> BadRequest:
        template = draw(st.sampled_from(_PREFIXES))
        path = template
        while b"{seg}" in path:
            path = path.replace(b"{seg}", draw(_SEGMENTS), 1)
        query = draw(_QUERY)
        if query:
            path += b"?" + query
        headers = [(b"authorization", draw(auth))]
        headers += draw(st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=4))
        method = draw(st.sampled_from(["GET", "GET", "POST", "DELETE", "PUT", "HEAD", "OPTIONS"]))
        body = draw(st.sampled_from([b"", b"{}", b"garbage", b"[]"])) if method == "POST" else b""
        return BadRequest(method, path, headers, body)

    return build()
