"""Event ingestion (scope ``events``): validate the whole body, then enqueue all of it or none.

Backpressure: a token past its rate (``CB_EVENTS_RATE_PER_TOKEN``, a batch of N costs N) gets
429, and a full events queue (``CB_EVENT_BACKLOG_MAX``) 503; both with ``Retry-After``, and
neither queues anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from core.errors import BacklogFull
from core.events.publisher import Publisher, PublishResult
from core.events.validate import parse_batch
from core.ratelimit import TokenBuckets
from core.settings import Settings
from worker.api.auth import token_id_of, too_many
from worker.api.problems import ProblemError
from worker.api.schemas import EventsAcceptedOut, problem, responses

_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "required": ["specversion", "id", "source", "type", "subject"],
    "properties": {
        "specversion": {"type": "string", "enum": ["1.0"]},
        "id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
        "source": {"type": "string", "minLength": 1},
        "type": {
            "type": "string",
            "pattern": "^oneroster\\.(course|courseComponent|componentResource|resource)"
            "\\.(created|updated|deleted)$",
        },
        "time": {"type": "string", "format": "date-time"},
        "subject": {"type": "string", "pattern": "^[A-Za-z0-9:._-]{1,200}$"},
        "datacontenttype": {"type": "string"},
        "data": {
            "type": "object",
            "properties": {
                "courseId": {"type": "string", "pattern": "^[A-Za-z0-9:._-]{1,200}$"},
                "previousCourseId": {"type": "string", "pattern": "^[A-Za-z0-9:._-]{1,200}$"},
            },
        },
    },
}
_BATCH = {"type": "array", "minItems": 1, "maxItems": 1000, "items": _ENVELOPE}
REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "One CloudEvent, or a JSON array of up to 1,000 (events.md)",
    "content": {
        "application/cloudevents+json": {"schema": _ENVELOPE},
        "application/cloudevents-batch+json": {"schema": _BATCH},
        "application/json": {"schema": {"oneOf": [_ENVELOPE, _BATCH]}},
    },
}


def build_router(
    publisher: Callable[[], Publisher],
    settings: Settings,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> APIRouter:
    """The ingestion route; ``publisher`` is built on first use (it connects to the broker)."""
    router = APIRouter(prefix="/v1", tags=["events"])
    rates = TokenBuckets(settings.events_rate_per_token, settings.events_burst_per_token)

    def accept(body: bytes, content_type: str, token_id: str) -> PublishResult:
        events = parse_batch(
            body,
            content_type=content_type,
            max_event_bytes=settings.event_max_bytes,
            max_batch=settings.event_max_batch,
        )
        allowed = rates.take(token_id, len(events), clock())
        if not allowed.allowed:
            raise too_many(
                f"this token may send {rates.rate:g} events a second (a batch of N costs N); "
                "nothing was queued",
                allowed.retry_after_s,
            )
        try:
            return publisher().publish(events)
        except BacklogFull as exc:
            raise ProblemError(
                503,
                "the events backlog is full; nothing was queued, retry later",
                kind="backlog-full",
                headers={"Retry-After": str(exc.retry_after_s)},
            ) from exc

    @router.post(
        "/events",
        status_code=202,
        response_model=EventsAcceptedOut,
        responses=responses(
            problem(413, "The body is larger than the configured limit"),
            problem(415, "The body is not one of the accepted media types"),
            problem(422, "At least one event is invalid (errors: index and reasons); none taken"),
            problem(429, "The token sent more events than its rate allows (Retry-After)"),
            problem(
                503, "The broker or store is unavailable, or the backlog is full (Retry-After)"
            ),
        ),
        openapi_extra={"requestBody": REQUEST_BODY},
        operation_id="postEvents",
        summary="Accept course mutation events once they are durably on the broker",
    )
    async def post_events(request: Request) -> Response:
        body = await request.body()
        content_type = request.headers.get("content-type", "")
        token_id = token_id_of(request.scope)
        result = await run_in_threadpool(accept, body, content_type, token_id)
        doc = {"accepted": result.accepted, "duplicates": result.duplicates}
        return Response(orjson.dumps(doc), status_code=202, media_type="application/json")

    return router
