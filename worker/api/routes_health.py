"""Operations routes: liveness, readiness (Redis and broker), Prometheus metrics."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from core.logging import get_logger
from worker.api.auth import check_metrics_token
from worker.api.metrics import ApiMetrics
from worker.api.problems import problem_response, request_id_of
from worker.api.schemas import HealthOut, ReadyOut, problem

log = get_logger(__name__)

Check = Callable[[], None]
_NO_STORE = {"cache-control": "no-store"}


def build_router(
    checks: dict[str, Check], metrics: ApiMetrics, metrics_digest: bytes | None
) -> APIRouter:
    """Health routes; ``checks`` name each dependency /readyz asks (each raises when down)."""
    router = APIRouter(tags=["operations"])

    @router.get(
        "/healthz",
        response_model=HealthOut,
        operation_id="health",
        summary="200 while the process runs",
    )
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json", headers=_NO_STORE)

    @router.get(
        "/readyz",
        response_model=ReadyOut,
        responses=problem(503, "A dependency did not answer (checks says which)"),
        operation_id="ready",
        summary="200 when Redis and the broker answer, else 503 naming the one that failed",
    )
    async def readyz(request: Request) -> Response:
        results = await run_in_threadpool(_run_checks, checks)
        if all(value == "ok" for value in results.values()):
            doc = {"status": "ready", "checks": results}
            return Response(orjson.dumps(doc), media_type="application/json", headers=_NO_STORE)
        failed = sorted(name for name, value in results.items() if value != "ok")
        return problem_response(
            503,
            f"not ready: {', '.join(failed)} did not answer",
            kind="not-ready",
            request_id=request_id_of(request),
            extra={"checks": results},
            headers=_NO_STORE,
        )

    @router.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text format",
                "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            },
            **problem(401, "A metrics token is configured and was not given"),
        },
        operation_id="metrics",
        summary="Prometheus metrics (needs a token only when CB_API_METRICS_TOKEN is set)",
    )
    async def prometheus(request: Request) -> Response:
        check_metrics_token(request.scope["headers"], metrics_digest)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router


def _run_checks(checks: dict[str, Check]) -> dict[str, str]:
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            log.warning("readiness check failed", dependency=name, error=repr(exc))
            results[name] = "unavailable"
    return results
