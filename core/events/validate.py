"""Event validation: every rule of events.md, pure; each failure names the field and the rule.

``validate_event`` checks one decoded envelope, ``parse_event_bytes`` one raw body (size, then
JSON, then rules) and ``parse_batch`` an HTTP-style body by content type. A batch is all or
nothing: one bad element rejects it, and ``InvalidBatch`` names every bad index.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Literal

import orjson

from core.errors import InvalidEvent
from core.events.model import ACTIONS, ENTITIES, TYPE_PREFIX, Action, CourseEvent, Entity

MAX_EVENT_BYTES: Final = 64 * 1024
MAX_BATCH: Final = 1000
# Real envelopes nest 2 levels; the cap keeps every JSON encoder on the path (orjson, kombu's
# json, the worker's decoder) far from its recursion limit.
MAX_DEPTH: Final = 32

SINGLE_TYPES: Final = frozenset({"application/cloudevents+json"})
BATCH_TYPES: Final = frozenset({"application/cloudevents-batch+json"})
EITHER_TYPES: Final = frozenset({"application/json"})

_ID_RE: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Ids that end up in Redis keys and OneRoster filters (subject, courseId, previousCourseId).
_REF_RE: Final = re.compile(r"(?!\.+$)[A-Za-z0-9:._-]{1,200}")
_ID_RULE: Final = "1-128 characters of A-Z a-z 0-9 . _ : -"
_REF_RULE: Final = "1-200 characters of A-Z a-z 0-9 : . _ -, not only dots"
_RFC3339_RE: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))?"
)
_COURSE_REQUIRED: Final[frozenset[Entity]] = frozenset(
    {"course", "courseComponent", "componentResource"}
)
_ENTITY_BY_NAME: Final[dict[str, Entity]] = {e: e for e in ENTITIES}
_ACTION_BY_NAME: Final[dict[str, Action]] = {a: a for a in ACTIONS}
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1

BodyKind = Literal["single", "batch", "either"]


@dataclass(frozen=True)
class BatchProblem:
    """One bad element of a batch: its index and why it is bad."""

    index: int
    reasons: list[str]


class InvalidBatch(InvalidEvent):
    """At least one element of a batch is invalid; nothing of the batch is accepted."""

    def __init__(self, message: str, *, problems: list[BatchProblem], **context: Any) -> None:
        reasons = [f"event {p.index}: {reason}" for p in problems for reason in p.reasons]
        super().__init__(message, reasons=reasons, **context)
        self.problems = problems


class UnsupportedContentType(InvalidEvent):
    """The body's media type (or charset) is not one events are accepted in."""


def is_valid_ref(value: object) -> bool:
    """Whether ``value`` may name a record in a Redis key or a OneRoster filter.

    The rule of ``subject`` and ``data.courseId``; upstream ids (fan-out results, the ids a
    bundle places) must pass it too, so every id that reaches a key passed the same check.
    """
    return isinstance(value, str) and _REF_RE.fullmatch(value) is not None


def validate_event(obj: object) -> CourseEvent:
    """Check one decoded envelope against events.md; raise ``InvalidEvent`` with every reason."""
    if not isinstance(obj, Mapping):
        raise InvalidEvent(
            "invalid event", reasons=[f"the event must be a JSON object, got {json_kind(obj)}"]
        )
    reasons: list[str] = []
    shape = _json_shape_problem(obj)
    if shape is not None:
        raise InvalidEvent("invalid event", reasons=[shape])
    env: dict[str, Any] = dict(obj)

    _check_specversion(env, reasons)
    event_id = _required_str(env, "id", reasons, pattern=_ID_RE, rule=_ID_RULE)
    source = _required_str(env, "source", reasons)
    subject = _required_str(env, "subject", reasons, pattern=_REF_RE, rule=_REF_RULE)
    entity_action = _check_type(env, reasons)
    when = _check_time(env, reasons)
    content_type = env.get("datacontenttype")
    if content_type is not None and not isinstance(content_type, str):
        reasons.append(f"datacontenttype must be a string, got {json_kind(content_type)}")
    entity = entity_action[0] if entity_action else None
    course_id, previous_course_id = _check_data(env, entity, reasons)

    if reasons or entity_action is None or event_id is None or source is None or subject is None:
        context = {"event_id": event_id} if event_id is not None else {}
        raise InvalidEvent("invalid event", reasons=reasons, **context)
    return CourseEvent(
        id=event_id,
        source=source,
        type=env["type"],
        entity=entity_action[0],
        action=entity_action[1],
        subject=subject,
        time=when,
        course_id=course_id,
        previous_course_id=previous_course_id,
        raw=env,
    )


def validate_envelope(obj: object, *, max_bytes: int = MAX_EVENT_BYTES) -> CourseEvent:
    """An already-decoded envelope (a batch element, a broker message): size rule, then the rest."""
    _check_size(_serialized_size(obj), max_bytes)
    return validate_event(obj)


def parse_event_bytes(raw: bytes | str, *, max_bytes: int = MAX_EVENT_BYTES) -> CourseEvent:
    """Check one raw event body: size first, then UTF-8 JSON, then the rules."""
    data = _as_bytes(raw)
    _check_size(len(data), max_bytes)
    return validate_event(_loads(data))


def parse_batch(
    raw: bytes,
    *,
    content_type: str,
    max_event_bytes: int = MAX_EVENT_BYTES,
    max_batch: int = MAX_BATCH,
) -> list[CourseEvent]:
    """Check an HTTP-style body: one event or a JSON array of events, chosen by content type."""
    kind = body_kind(content_type)
    data = _as_bytes(raw)
    looks_like_array = data.lstrip()[:1] == b"["
    if kind == "single" or (kind == "either" and not looks_like_array):
        _check_size(len(data), max_event_bytes)
        if looks_like_array:
            raise InvalidEvent(
                "invalid event",
                reasons=[
                    f"{content_type.partition(';')[0].strip()} carries one event (a JSON object); "
                    "send a batch as application/cloudevents-batch+json or application/json"
                ],
            )
        return [validate_event(_loads(data))]

    # A cheap bound before parsing: no batch of valid events is this large, even pretty-printed.
    if len(data) > 2 * max_batch * (max_event_bytes + 1):
        raise InvalidEvent(
            "batch too large",
            reasons=[f"the batch body is {len(data)} bytes, more than {max_batch} events can take"],
        )
    items = _loads(data)
    if not isinstance(items, list):
        raise InvalidEvent(
            "invalid batch", reasons=[f"a batch must be a JSON array, got {json_kind(items)}"]
        )
    if not items:
        raise InvalidEvent("empty batch", reasons=["empty batch: send at least one event"])
    if len(items) > max_batch:
        raise InvalidEvent(
            "batch too large",
            reasons=[f"the batch has {len(items)} events; at most {max_batch} are accepted"],
            batch_size=len(items),
        )
    events: list[CourseEvent] = []
    problems: list[BatchProblem] = []
    for index, item in enumerate(items):
        try:
            events.append(validate_envelope(item, max_bytes=max_event_bytes))
        except InvalidEvent as exc:
            problems.append(BatchProblem(index=index, reasons=exc.reasons))
    if problems:
        raise InvalidBatch(
            f"{len(problems)} of {len(items)} events are invalid",
            problems=problems,
            batch_size=len(items),
        )
    return events


def body_kind(content_type: str) -> BodyKind:
    """What a body of this media type holds; ``UnsupportedContentType`` for any other type."""
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    kind: BodyKind
    if media in SINGLE_TYPES:
        kind = "single"
    elif media in BATCH_TYPES:
        kind = "batch"
    elif media in EITHER_TYPES:
        kind = "either"
    else:
        shown = _show(media or content_type)
        raise UnsupportedContentType(
            "unsupported content type",
            reasons=[
                f"unsupported content type {shown}: use application/cloudevents+json, "
                "application/cloudevents-batch+json or application/json"
            ],
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() != "charset":
            continue
        charset = value.strip().strip('"').lower()
        if charset not in ("utf-8", "utf8"):
            raise UnsupportedContentType(
                "unsupported content type",
                reasons=[f"unsupported content type charset {_show(charset)}: events are UTF-8"],
            )
    return kind


# --- field rules ----------------------------------------------------------------------------
def _check_specversion(env: Mapping[str, Any], reasons: list[str]) -> None:
    value = env.get("specversion")
    if value is None:
        reasons.append('specversion is required and must be "1.0"')
    elif not isinstance(value, str):
        reasons.append(f'specversion must be the string "1.0", got {json_kind(value)}')
    elif value != "1.0":
        reasons.append(f'specversion must be "1.0", got {_show(value)}')


def _required_str(
    env: Mapping[str, Any],
    field: str,
    reasons: list[str],
    *,
    pattern: re.Pattern[str] | None = None,
    rule: str = "",
) -> str | None:
    value = env.get(field)
    if value is None:
        reasons.append(f"{field} is required")
        return None
    return _checked_str(value, field, reasons, pattern=pattern, rule=rule)


def _checked_str(
    value: object,
    field: str,
    reasons: list[str],
    *,
    pattern: re.Pattern[str] | None = None,
    rule: str = "",
) -> str | None:
    if not isinstance(value, str):
        reasons.append(f"{field} must be a string, got {json_kind(value)}")
        return None
    if not value.strip():
        reasons.append(f"{field} must not be empty")
        return None
    if pattern is not None and pattern.fullmatch(value) is None:
        reasons.append(f"{field} must be {rule}, got {_show(value)}")
        return None
    return value


def _check_type(env: Mapping[str, Any], reasons: list[str]) -> tuple[Entity, Action] | None:
    value = env.get("type")
    expected = "oneroster.<entity>.<action>"
    if value is None:
        reasons.append(f"type is required ({expected})")
        return None
    if not isinstance(value, str):
        reasons.append(f"type must be a string ({expected}), got {json_kind(value)}")
        return None
    parts = value[len(TYPE_PREFIX) :].split(".") if value.startswith(TYPE_PREFIX) else []
    if len(parts) != 2:
        reasons.append(f"type must be {expected}, got {_show(value)}")
        return None
    entity = _ENTITY_BY_NAME.get(parts[0])
    action = _ACTION_BY_NAME.get(parts[1])
    if entity is None:
        reasons.append(f"type entity {_show(parts[0])} is not one of {', '.join(ENTITIES)}")
    if action is None:
        reasons.append(f"type action {_show(parts[1])} is not one of {', '.join(ACTIONS)}")
    if entity is None or action is None:
        return None
    return entity, action


def _check_time(env: Mapping[str, Any], reasons: list[str]) -> datetime | None:
    value = env.get("time")
    if value is None:
        return None
    if not isinstance(value, str):
        reasons.append(f"time must be an RFC 3339 string, got {json_kind(value)}")
        return None
    when, problem = parse_rfc3339(value)
    if problem is not None:
        reasons.append(f"time {problem}, got {_show(value)}")
    return when


def parse_rfc3339(value: str) -> tuple[datetime | None, str | None]:
    """An RFC 3339 timestamp with offset as an aware datetime, or why it is not one."""
    match = _RFC3339_RE.fullmatch(value)
    if match is None:
        return None, "must be an RFC 3339 timestamp such as 2026-11-22T10:15:03Z"
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = match.groups()
    if zulu is None and sign is None:
        return None, "must include a UTC offset (Z or +hh:mm)"
    offset = timedelta(0)
    if sign is not None:
        if int(off_h) > 23 or int(off_m) > 59:
            return None, "has an impossible UTC offset"
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        if sign == "-":
            offset = -offset
    leap = int(second) == 60  # RFC 3339 allows a leap second; datetime cannot hold it
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    try:
        when = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            59 if leap else int(second),
            999_999 if leap else micro,
            tzinfo=timezone(offset),
        )
    except ValueError:
        return None, "is not a real date and time"
    return when, None


def _check_data(
    env: Mapping[str, Any], entity: Entity | None, reasons: list[str]
) -> tuple[str | None, str | None]:
    if env.get("data_base64") is not None:
        reasons.append("data_base64 is not supported: data must be a JSON object")
    data = env.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, Mapping):
        reasons.append(f"data must be a JSON object, got {json_kind(data)}")
        return None, None
    course_id = _optional_ref(data, "courseId", reasons)
    previous = _optional_ref(data, "previousCourseId", reasons)
    if entity in _COURSE_REQUIRED and data.get("courseId") is None:
        reasons.append(f"data.courseId is required for {TYPE_PREFIX}{entity}.* events")
    return course_id, previous


def _optional_ref(data: Mapping[str, Any], key: str, reasons: list[str]) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    return _checked_str(value, f"data.{key}", reasons, pattern=_REF_RE, rule=_REF_RULE)


# --- bytes and JSON ---------------------------------------------------------------------------
def _as_bytes(raw: bytes | str) -> bytes:
    if isinstance(raw, str):
        try:
            return raw.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidEvent(
                "invalid event", reasons=["the body is not valid UTF-8 text"]
            ) from None
    if isinstance(raw, bytearray | memoryview):
        return bytes(raw)
    if not isinstance(raw, bytes):
        raise InvalidEvent(
            "invalid event", reasons=[f"the body must be bytes, got {json_kind(raw)}"]
        )
    return raw


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise InvalidEvent(
            "event too large",
            reasons=[f"the event is {size} bytes; at most {max_bytes} bytes are accepted"],
            size=size,
        )


def _loads(data: bytes) -> object:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            reason = "the body is not valid UTF-8"
        else:
            reason = f"the body is not valid JSON: {exc}"
        raise InvalidEvent("invalid event", reasons=[reason]) from None


def _serialized_size(item: object) -> int:
    try:
        return len(orjson.dumps(item))
    except TypeError:
        # Only nesting beyond orjson's encoder limit gets here; the depth rule explains it.
        return 0


def _json_shape_problem(envelope: Mapping[Any, Any]) -> str | None:
    """Why the envelope is not plain JSON within ``MAX_DEPTH`` levels, or None (iterative)."""
    stack: list[tuple[object, int]] = [(envelope, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            if depth > MAX_DEPTH:
                return f"the event nests deeper than {MAX_DEPTH} levels"
            for key, item in value.items():
                if not isinstance(key, str):
                    return f"object keys must be strings, got {json_kind(key)}"
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if depth > MAX_DEPTH:
                return f"the event nests deeper than {MAX_DEPTH} levels"
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        elif isinstance(value, int):
            if not _INT_MIN <= value <= _INT_MAX:
                return "a number in the event is out of the 64-bit range"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return "the event holds a number JSON cannot carry (NaN or infinity)"
        else:
            return f"the event holds a value JSON cannot carry ({type(value).__name__})"
    return None


def json_kind(value: object) -> str:
    """The JSON name of a value's type, for reasons."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _show(value: str, limit: int = 60) -> str:
    """A value quoted for a reason, cut short so reasons stay readable."""
    return repr(value if len(value) <= limit else value[:limit] + "…")
