"""The read API: app factory, request context (id, body limit, last-resort 500), error mapping.

Run it with ``uvicorn worker.api.app:create_app --factory``. Routes live in ``routes_*``; they
decode, call the reader or a core service, and raise core errors that are mapped here, once.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis
import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import BundlesError
from core.logging import configure_logging, get_logger
from core.settings import Settings, get_settings
from worker.api import routes_attempts, routes_courses, routes_events, routes_health
from worker.api.auth import SCHEME_NAME, AuthGate, TokenTable, metrics_digest
from worker.api.metrics import ApiMetrics, CoreCollector, MetricsMiddleware
from worker.api.problems import (
    Problem,
    ProblemError,
    from_problem,
    http_problem,
    map_core_error,
    request_id_of,
    send_problem,
    validation_problem,
)
from worker.api.services import ApiServices

log = get_logger(__name__)

API_VERSION = "1.0.0"
BENCH_BARE_ENV = "CB_API_BENCH_BARE"  # a file whose bytes GET /bench/bare answers (benchmarks)
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


class RequestContext:
    """Request id (echoed or made) on every answer and log line; body size and time limits;
    a client that went away logged as such; last-resort 500."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, body_timeout_s: float = 60.0) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self._counter = 0
        self._stem = os.urandom(6).hex()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given: bytes | None = None
        length: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value
            elif name == b"content-length":
                length = value
        if given is not None and _REQUEST_ID.fullmatch(given):
            rid = given.decode()
        else:
            self._counter += 1
            rid = f"{self._stem}-{self._counter:x}"
        rid_header = (b"x-request-id", rid.encode())
        scope["request_id"] = rid
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        if length is not None:
            too_big = self._check_length(length)
            if too_big is not None:
                await send_problem(send_with_id, too_big, rid)
                return
        limited = self._limited(receive) if scope.get("method") in _BODY_METHODS else receive
        tokens = structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            await self.app(scope, limited, send_with_id)
        except ClientDisconnect:
            # Nobody is left to answer: one line, no traceback, not an error of ours.
            log.info(
                "client disconnected",
                path=scope.get("path"),
                method=scope.get("method"),
                outcome="disconnected",
                reason="client-disconnect",
            )
        except Exception:
            log.exception("unhandled error", path=scope.get("path"), method=scope.get("method"))
            if not started:
                await send_problem(
                    send_with_id, ProblemError(500, "internal error", kind="internal"), rid
                )
        finally:
            structlog.contextvars.reset_contextvars(**tokens)

    def _check_length(self, length: bytes) -> ProblemError | None:
        if not length.isdigit():
            return ProblemError(400, "Content-Length is not a number", kind="bad-request")
        if int(length) > self.max_body_bytes:
            return _too_large(self.max_body_bytes)
        return None

    def _limited(self, receive: Receive) -> Receive:
        received = 0
        limit = self.max_body_bytes
        timeout_s = self.body_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout_s
        complete = False

        async def counted() -> Message:
            nonlocal received, complete
            if complete:  # later receives wait for a disconnect: no deadline on those
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                log.info("request body timed out", reason="body-timeout", timeout_s=timeout_s)
                raise _body_late(timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        return counted


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _too_large(limit: int) -> ProblemError:
    return ProblemError(413, f"the body is larger than {limit} bytes", kind="body-too-large")


def _body_late(timeout_s: float) -> ProblemError:
    return ProblemError(
        408,
        f"the request body did not arrive within {timeout_s:g} s",
        kind="body-timeout",
        headers={"Connection": "close"},
    )


# --- error mapping -----------------------------------------------------------------------------
async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return from_problem(exc, request_id_of(request))


async def _on_core_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BundlesError)
    mapped = map_core_error(exc)
    if mapped.status >= 500:
        log.warning(
            "request failed", error_type=type(exc).__name__, error=str(exc), status=mapped.status
        )
    return from_problem(mapped, request_id_of(request))


async def _on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return from_problem(validation_problem(exc), request_id_of(request))


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return from_problem(http_problem(exc), request_id_of(request))


async def _on_redis(request: Request, exc: Exception) -> Response:
    log.warning("redis unavailable", error=repr(exc))
    problem = ProblemError(
        503,
        "the store did not answer; retry",
        kind="store-unavailable",
        headers={"Retry-After": "1"},
    )
    return from_problem(problem, request_id_of(request))


# --- the app -----------------------------------------------------------------------------------
def create_app(settings: Settings | None = None, *, services: ApiServices | None = None) -> FastAPI:
    """The API over ``services`` (built from ``settings`` when not given).

    Logging is configured here only when the services are built here (uvicorn's factory call);
    a caller that passes its own services owns the logging setup too.
    """
    if services is None:  # the process entrypoint: configure logging once, build the wiring
        settings = settings or get_settings()
        configure_logging(settings.log_format, settings.log_level)
        services = ApiServices.from_settings(settings)
    settings = services.settings

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        services.start()
        log.info("api started", tokens=len(app.state.tokens), prefix=settings.key_prefix)
        try:
            yield
        finally:
            services.stop()

    app = FastAPI(
        title="course-bundles read API",
        version=API_VERSION,
        description="Prebuilt OneRoster course bundles, units, lessons, resources, attempt "
        "pointers and event ingestion. Errors are application/problem+json (RFC 9457).",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # A slash redirect would build its Location from the Host header: unknown paths are 404.
        redirect_slashes=False,
    )
    app.state.services = services
    app.state.tokens = TokenTable(settings.api_tokens)
    metrics = ApiMetrics()
    metrics.registry.register(CoreCollector(lambda: services.near_cache, lambda: services.swaps))
    app.state.metrics = metrics
    services.budget_observer = metrics.budget

    secret = settings.api_metrics_token
    # Hot read routes first: a request is matched against the routes in order.
    protected: list[tuple[APIRoute, str]] = []
    courses = routes_courses.build_router(
        services.reader, metrics, coalesce=services.flight.enabled
    )
    protected += _mount(app, courses, "read")
    protected += _mount(app, routes_attempts.build_router(services.attempts), "attempts")
    events = routes_events.build_router(lambda: services.publisher, settings)
    protected += _mount(app, events, "events")
    health = routes_health.build_router(
        {"redis": services.check_redis, "broker": services.check_broker},
        metrics,
        metrics_digest(secret.get_secret_value() if secret is not None else None),
    )
    _mount(app, health, None)
    bare = os.environ.get(BENCH_BARE_ENV)
    if bare:
        _add_bare_route(app, Path(bare).read_bytes())

    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(BundlesError, _on_core_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(redis.RedisError, _on_redis)
    app.add_middleware(AuthGate, table=app.state.tokens, protected=protected)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(
        RequestContext,
        max_body_bytes=settings.api_max_body_bytes,
        body_timeout_s=settings.api_body_timeout_s,
    )
    app.openapi = lambda: _openapi(app, protected)  # type: ignore[method-assign]
    return app


def _mount(app: FastAPI, router: APIRouter, scope: str | None) -> list[tuple[APIRoute, str]]:
    """Add the router's routes to the app itself; return them with the scope they need.

    ``include_router`` keeps a nested router that is matched three times per request; flat
    routes are matched once, which is a measurable share of a near-cache hit's cost.
    """
    app.router.routes.extend(router.routes)
    if scope is None:
        return []
    return [(route, scope) for route in router.routes if isinstance(route, APIRoute)]


def _add_bare_route(app: FastAPI, body: bytes) -> None:
    """Benchmarks only: the same bytes as a lesson read, with none of the work (routed first)."""

    @app.get(
        "/bench/bare/{courseId}/units/{unitSlug}/lessons/{lessonSlug}", include_in_schema=False
    )
    async def bare(courseId: str, unitSlug: str, lessonSlug: str) -> Response:
        return Response(body, media_type="application/json")

    app.router.routes.insert(0, app.router.routes.pop())


def _openapi(app: FastAPI, protected: list[tuple[APIRoute, str]]) -> dict[str, Any]:
    """The generated document, plus the problem schema and each operation's bearer scope."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    doc["components"]["securitySchemes"] = {
        SCHEME_NAME: {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from CB_API_TOKENS; each operation names the scope it needs.",
        }
    }
    for route, scope in protected:
        for method in route.methods or ():
            operation = doc["paths"][route.path_format][method.lower()]
            operation["security"] = [{SCHEME_NAME: []}]
            operation["description"] = f"Needs a bearer token with the `{scope}` scope."
    app.openapi_schema = doc
    return doc
