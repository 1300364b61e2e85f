"""Attempt-pointer routes (scope ``attempts``): read, resolve and reset a learner's attempt."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from core.attempts.service import AttemptService
from worker.api.schemas import (
    AttemptOut,
    AttemptResourceId,
    ClearedAttemptOut,
    ResolvedAttemptOut,
    UserId,
    problem,
    responses,
)

NO_STORE = {"cache-control": "no-store"}


def _json(doc: dict[str, object]) -> Response:
    return Response(orjson.dumps(doc), media_type="application/json", headers=NO_STORE)


def build_router(attempts: AttemptService) -> APIRouter:
    """The attempt routes, bound to one attempt service."""
    router = APIRouter(prefix="/v1/attempts", tags=["attempts"])

    @router.get(
        "/{userId}/{resourceId}",
        response_model=AttemptOut,
        responses=responses(problem(404, "No active attempt")),
        operation_id="getActiveAttempt",
        summary="The learner's active attempt on the resource",
    )
    async def get_attempt(user_id: UserId, resource_id: AttemptResourceId) -> Response:
        found = await run_in_threadpool(attempts.active, user_id, resource_id)
        return _json({"attemptNumber": found.number, "source": found.source})

    @router.post(
        "/{userId}/{resourceId}/resolve",
        response_model=ResolvedAttemptOut,
        responses=responses(problem(502, "OneRoster answered with an error")),
        operation_id="resolveAttempt",
        summary="The active attempt, or a new one derived from OneRoster (one per learner)",
    )
    async def resolve_attempt(user_id: UserId, resource_id: AttemptResourceId) -> Response:
        found = await run_in_threadpool(attempts.resolve, user_id, resource_id)
        return _json(
            {"attemptNumber": found.number, "source": found.source, "created": found.created}
        )

    @router.delete(
        "/{userId}/{resourceId}",
        response_model=ClearedAttemptOut,
        responses=responses(
            problem(404, "No active attempt"),
            problem(409, "Another attempt is active (see activeAttempt)"),
        ),
        operation_id="resetAttempt",
        summary="Clear that attempt's state and pointer",
    )
    async def reset_attempt(
        user_id: UserId,
        resource_id: AttemptResourceId,
        attempt: Annotated[int, Query(ge=1, le=2**53 - 1, description="The attempt to clear")],
    ) -> Response:
        cleared = await run_in_threadpool(attempts.reset, user_id, resource_id, attempt)
        return _json({"clearedAttempt": cleared})

    return router
