"""Is this broker message a valid call of one of our tasks? A pure check, run before Celery.

Celery turns a message into a ``Request`` assuming protocol 2: headers naming the task and its id,
a JSON body ``[args, kwargs, embed]``. A message that breaks that assumption (a dict body, a
missing id, a ``timelimit`` that is not a pair) raises inside Celery's consumer and stops the
worker, and late acks hand it to the next worker. ``check_message`` names what is wrong before
that can happen; the worker dead-letters and acknowledges what it rejects (worker/guard.py).

Pure and broker-agnostic: the same message shape travels over Redis and RabbitMQ.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import orjson

from core.events.validate import json_kind

RejectCode = Literal[
    "not_a_task",  # no protocol-2 headers (or protocol 1, which our producers never send)
    "headers",  # a protocol header is missing or of the wrong type
    "unknown_task",  # the named task is not registered here
    "content_type",  # not application/json (or not UTF-8)
    "too_large",
    "undecodable",  # not UTF-8 JSON
    "shape",  # JSON, but not [args, kwargs, embed]
    "arguments",  # args/kwargs do not fit the task's signature
    "unexpected",  # Celery failed on it in a way the check did not foresee
]

JSON_CONTENT_TYPE: Final = "application/json"
# Half the recursion limit of the stdlib JSON decoder that Celery's pool process runs on the same
# body. Deeper events than events.md allows (32) still reach handle_event, which says so.
MAX_DEPTH: Final = 500
_UTF8: Final = frozenset({"utf-8", "utf8"})
_EMBED_LISTS: Final = ("callbacks", "errbacks", "chain")
_OPTIONAL_TEXT_HEADERS: Final = (
    "shadow",
    "root_id",
    "parent_id",
    "group",
    "argsrepr",
    "kwargsrepr",
    "origin",
    "lang",
)


@dataclass(frozen=True)
class TaskMessage:
    """What the guard looks at: the headers, content type and encoding, and the raw body."""

    headers: object
    content_type: str | None
    content_encoding: str | None
    body: bytes | str | None


@dataclass(frozen=True)
class Rejection:
    """Why a message is not a call of our task: a code (the metric label) and a sentence."""

    code: RejectCode
    detail: str


def check_message(
    message: TaskMessage, tasks: Mapping[str, inspect.Signature], *, max_bytes: int
) -> Rejection | None:
    """None when the message is a protocol-2 JSON call that fits a task in ``tasks``."""
    headers = message.headers
    if not isinstance(headers, Mapping) or "task" not in headers:
        return Rejection("not_a_task", "no protocol-2 task headers (a 'task' header is required)")
    problem = _header_problem(headers)
    if problem:
        return Rejection("headers", problem)
    name = headers["task"]
    signature = tasks.get(name)
    if signature is None:
        return Rejection("unknown_task", f"no task named {_clip(name)} is registered")
    problem = _content_problem(message.content_type, message.content_encoding)
    if problem:
        return Rejection("content_type", problem)
    body = message.body
    if body is None:
        return Rejection("undecodable", "the message has no body")
    size = len(body)
    if size > max_bytes:
        return Rejection("too_large", f"the body is {size} bytes; at most {max_bytes} are accepted")
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Rejection("undecodable", _decode_problem(body, exc))
    problem = _shape_problem(decoded)
    if problem:
        return Rejection("shape", problem)
    args, kwargs, _ = decoded
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        return Rejection("arguments", f"the arguments do not fit {name}{signature}: {exc}")
    return None


def _header_problem(headers: Mapping[Any, Any]) -> str | None:
    task = headers["task"]
    if not isinstance(task, str) or not task:
        return f"the 'task' header must be a non-empty string, got {json_kind(task)}"
    task_id = headers.get("id")
    if not isinstance(task_id, str) or not task_id:
        return f"the 'id' header must be a non-empty string, got {json_kind(task_id)}"
    for key in _OPTIONAL_TEXT_HEADERS:
        value = headers.get(key)
        if value is not None and not isinstance(value, str):
            return f"the {key!r} header must be a string or null, got {json_kind(value)}"
    for key in ("eta", "expires"):
        problem = _time_problem(key, headers.get(key))
        if problem:
            return problem
    retries = headers.get("retries")
    if retries is not None and (not _is_int(retries) or retries < 0):
        return f"the 'retries' header must be a whole number >= 0, got {_clip(retries)}"
    timelimit = headers.get("timelimit")
    if timelimit is not None and not (
        isinstance(timelimit, list | tuple)
        and len(timelimit) == 2
        and all(limit is None or _is_number(limit) for limit in timelimit)
    ):
        return (
            f"the 'timelimit' header must be [hard, soft] seconds or nulls, got {_clip(timelimit)}"
        )
    ignore_result = headers.get("ignore_result")
    if ignore_result is not None and not isinstance(ignore_result, bool):
        return f"the 'ignore_result' header must be a boolean, got {json_kind(ignore_result)}"
    return None


def _time_problem(key: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return None
    return f"the {key!r} header must be an ISO 8601 time or null, got {_clip(value)}"


def _content_problem(content_type: str | None, content_encoding: str | None) -> str | None:
    if content_type != JSON_CONTENT_TYPE:
        return f"the content type must be {JSON_CONTENT_TYPE}, got {_clip(content_type)}"
    if content_encoding is not None and content_encoding.lower() not in _UTF8:
        return f"the content encoding must be utf-8, got {_clip(content_encoding)}"
    return None


def _decode_problem(body: bytes | str, exc: orjson.JSONDecodeError) -> str:
    if isinstance(body, bytes):
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as bad:
            return f"the body is not valid UTF-8 (byte {bad.start})"
    return f"the body is not valid JSON: {exc}"


def _shape_problem(decoded: object) -> str | None:
    if not isinstance(decoded, list) or len(decoded) != 3:
        return f"the body must be a JSON array [args, kwargs, embed], got {json_kind(decoded)}" + (
            f" of {len(decoded)}" if isinstance(decoded, list) else ""
        )
    args, kwargs, embed = decoded
    if _deeper_than(decoded, MAX_DEPTH):
        return f"the body nests deeper than {MAX_DEPTH} levels"
    if not isinstance(args, list):
        return f"args (body[0]) must be an array, got {json_kind(args)}"
    if not isinstance(kwargs, dict):
        return f"kwargs (body[1]) must be an object, got {json_kind(kwargs)}"
    if not isinstance(embed, dict):
        return f"embed (body[2]) must be an object, got {json_kind(embed)}"
    for key in _EMBED_LISTS:
        if embed.get(key) is not None and not isinstance(embed[key], list):
            return f"embed {key!r} must be an array or null, got {json_kind(embed[key])}"
    if embed.get("chord") is not None and not isinstance(embed["chord"], dict):
        return f"embed 'chord' must be an object or null, got {json_kind(embed['chord'])}"
    return None


def _deeper_than(value: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _clip(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
