"""RFC 9457 problem+json: the one error shape of the API, and the map from core errors to it.

Every error the API answers goes through here: core errors, validation errors, unknown routes,
wrong methods and unexpected exceptions. The answer never carries a stack trace; it carries the
request id so an operator can find the logged one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Send

from core.attempts.keys import InvalidAttemptId
from core.errors import (
    AmbiguousRedirect,
    AttemptConflict,
    BrokerUnavailable,
    BundleCorrupt,
    BundleError,
    BundlesError,
    CourseNotFound,
    FlightError,
    InvalidEvent,
    LookupMiss,
    NoActiveAttempt,
    OneRosterError,
    OneRosterUnavailable,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "urn:course-bundles:problem:"
RETRY_AFTER_S = "1"
CORRUPT_RETRY_AFTER_S = "5"  # a damaged bundle waits for its rebuild, not for a moment

_TITLES: dict[int, str] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class Problem(BaseModel):
    """The problem document (documentation model; answers are built without it)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:course-bundles:problem:not-found"])
    title: str
    status: int
    detail: str
    requestId: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        default=None,
        description="422: each bad input (validation: in, name, reason; events: index, reasons)",
    )
    candidates: list[str] | None = Field(
        default=None, description="409 on a redirect: every path the slug resolves to"
    )
    activeAttempt: int | None = Field(
        default=None, description="409 on an attempt reset: the attempt that is active"
    )
    checks: dict[str, str] | None = Field(
        default=None, description="503 on /readyz: each dependency and whether it answered"
    )


class ProblemError(Exception):
    """Raised anywhere in the API to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        title: str | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.title = title or _TITLES.get(status, "Error")
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


def problem_body(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    title: str | None = None,
    request_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """The serialised problem document."""
    doc: dict[str, Any] = {
        "type": TYPE_BASE + kind if kind else "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if request_id:
        doc["requestId"] = request_id
    if extra:
        doc.update(extra)
    return orjson.dumps(doc)


def problem_response(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    title: str | None = None,
    request_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A problem+json response."""
    body = problem_body(status, detail, kind=kind, title=title, request_id=request_id, extra=extra)
    return Response(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


async def send_problem(send: Send, exc: ProblemError, request_id: str | None) -> None:
    """Answer with a problem straight on the ASGI channel (for middleware, outside the router)."""
    body = problem_body(
        exc.status,
        exc.detail,
        kind=exc.kind,
        title=exc.title,
        request_id=request_id,
        extra=exc.extra,
    )
    headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()),
    ]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def from_problem(exc: ProblemError, request_id: str | None) -> Response:
    """The response for a raised ``ProblemError``."""
    return problem_response(
        exc.status,
        exc.detail,
        kind=exc.kind,
        title=exc.title,
        request_id=request_id,
        extra=exc.extra,
        headers=exc.headers,
    )


def map_core_error(exc: BundlesError) -> ProblemError:
    """The HTTP meaning of a core error (routes raise core errors; this is the one mapping)."""
    if isinstance(exc, CourseNotFound):
        return ProblemError(404, "no such course", kind="course-not-found")
    if isinstance(exc, AmbiguousRedirect):
        return ProblemError(
            409,
            "the slug resolves to more than one place",
            kind="ambiguous-redirect",
            extra={"candidates": list(exc.candidates)},
        )
    if isinstance(exc, LookupMiss):
        return ProblemError(404, exc.message, kind="not-found")
    if isinstance(exc, AttemptConflict):
        return ProblemError(
            409,
            f"attempt {exc.active} is the active attempt",
            kind="attempt-conflict",
            extra={"activeAttempt": exc.active},
        )
    if isinstance(exc, NoActiveAttempt):
        return ProblemError(404, "no active attempt", kind="no-active-attempt")
    if isinstance(exc, InvalidAttemptId):
        return ProblemError(
            422,
            exc.message,
            kind="invalid-request",
            extra={"errors": [{"in": "path", "reason": exc.message}]},
        )
    if isinstance(exc, InvalidEvent):
        return _invalid_events(exc)
    if isinstance(exc, BrokerUnavailable):
        return ProblemError(
            503,
            "the broker did not take the events; nothing was accepted, retry",
            kind="broker-unavailable",
            headers={"Retry-After": RETRY_AFTER_S},
        )
    if isinstance(exc, OneRosterUnavailable | FlightError):
        return ProblemError(
            503,
            "the course could not be read from OneRoster now; retry",
            kind="upstream-unavailable",
            headers={"Retry-After": RETRY_AFTER_S},
        )
    if isinstance(exc, OneRosterError):
        return ProblemError(502, "OneRoster answered with an error", kind="upstream-error")
    if isinstance(exc, BundleCorrupt):
        return ProblemError(
            503,
            "the stored bundle is damaged; a rebuild was requested, retry",
            kind="bundle-corrupt",
            headers={"Retry-After": CORRUPT_RETRY_AFTER_S},
        )
    if isinstance(exc, BundleError):
        return ProblemError(
            502, "the course's OneRoster data cannot be built into a bundle", kind="unbuildable"
        )
    return ProblemError(500, "internal error", kind="internal")


def _invalid_events(exc: InvalidEvent) -> ProblemError:
    problems = getattr(exc, "problems", None)
    if problems is not None:
        errors = [{"index": p.index, "reasons": list(p.reasons)} for p in problems]
        return ProblemError(
            422,
            exc.message,
            kind="invalid-events",
            extra={"errors": errors},
        )
    if type(exc).__name__ == "UnsupportedContentType":
        return ProblemError(415, "; ".join(exc.reasons), kind="unsupported-media-type")
    return ProblemError(
        422,
        exc.message,
        kind="invalid-events",
        extra={"errors": [{"index": 0, "reasons": list(exc.reasons)}]},
    )


def validation_problem(exc: RequestValidationError) -> ProblemError:
    """422 naming each bad parameter: where it is, its name, and why."""
    errors = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        errors.append(
            {
                "in": loc[0] if loc else "request",
                "name": ".".join(loc[1:]) if len(loc) > 1 else "",
                "reason": str(err.get("msg", "invalid")),
            }
        )
    return ProblemError(
        422, "the request has invalid parameters", kind="invalid-request", extra={"errors": errors}
    )


def http_problem(exc: StarletteHTTPException) -> ProblemError:
    """Unknown routes (404), wrong methods (405, with Allow) and other framework errors."""
    detail = {404: "no such route", 405: "method not allowed on this route"}.get(
        exc.status_code, str(exc.detail)
    )
    kind = {404: "no-such-route", 405: "method-not-allowed"}.get(exc.status_code)
    return ProblemError(exc.status_code, detail, kind=kind, headers=exc.headers or None)


def request_id_of(request: Request) -> str | None:
    """The id the context middleware gave this request."""
    value = request.scope.get("request_id")
    return value if isinstance(value, str) else None
