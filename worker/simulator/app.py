"""The simulator's ASGI app: OneRoster 1.2 reads and writes over a :class:`Catalog`, plus ``/_sim``.

Every API request is counted, then faults apply, then the Bearer token is checked. ``/_sim/*``
needs no token and never sees faults.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import fields, replace
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import orjson
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from worker.simulator.catalog import (
    COLLECTION_PATH,
    GRADEBOOK,
    RESOURCES,
    ROSTERING,
    SINGULAR,
    Catalog,
    CatalogConfig,
    InvalidRecord,
    RecordExists,
    RecordNotFound,
    generate_catalog,
)
from worker.simulator.faults import FaultSettings
from worker.simulator.filters import FilterError
from worker.simulator.state import (
    TOTAL_MODES,
    SimulatorOptions,
    SimulatorState,
    options_dict,
    update_options,
)

__all__ = ["SimulatorOptions", "SimulatorState", "create_app", "imsx", "json_response"]

Rec = dict[str, Any]


# --- responses -----------------------------------------------------------------------------
def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def imsx(
    status: int, description: str, code_minor: str, headers: dict[str, str] | None = None
) -> Response:
    """An ``imsx_StatusInfo``-shaped error answer."""
    body = {
        "imsx_codeMajor": "failure",
        "imsx_severity": "error",
        "imsx_description": description,
        "imsx_CodeMinor": {
            "imsx_codeMinorField": [
                {
                    "imsx_codeMinorFieldName": "TargetEndSystem",
                    "imsx_codeMinorFieldValue": code_minor,
                }
            ]
        },
    }
    return json_response(body, status, headers)


_FAULT_MINOR = {429: "server_busy", 503: "server_busy"}


def _state(request: Request) -> SimulatorState:
    state: SimulatorState = request.app.state.sim
    return state


async def _guard(request: Request, kind: str) -> Response | None:
    """Count the request, inject faults, check the token: an error answer or None to go on."""
    sim = _state(request)
    path = request.url.path
    sim.stats.request(kind, path)
    now = sim.options.clock()
    decision = sim.faults.decide(path, now=now, is_token=kind == "token")
    if decision.delay_s > 0:
        await asyncio.sleep(decision.delay_s)
    if decision.status is not None:
        sim.stats.fault(decision.reason, decision.status)
        headers = {}
        if decision.retry_after_s is not None:
            headers["Retry-After"] = str(decision.retry_after_s)
        if decision.reason == "echo":
            return await _echo(request, decision.status)
        minor = _FAULT_MINOR.get(decision.status, "internal_server_error")
        return imsx(decision.status, f"injected fault: {decision.reason}", minor, headers)
    if kind == "token" or not sim.options.require_auth:
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not sim.tokens.valid(token.strip(), now=now):
        sim.stats.count("unauthorized")
        return imsx(
            401,
            "missing, unknown or expired access token",
            "unauthorisedrequest",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return None


async def _echo(request: Request, status: int) -> Response:
    """An error that quotes the request back, credentials and all (as some servers do)."""
    body = (await request.body()).decode("latin-1")
    auth = request.headers.get("authorization", "")
    description = (
        f"rejected {request.method} {request.url} (Authorization: {auth}) body {body!r}; "
        f"token {auth.partition(' ')[2]} unknown"
    )
    return imsx(status, description, "invalid_data")


_PAD_CHUNK = 64 * 1024


def _hostile(request: Request, response: Response) -> Response:
    """``response`` as the hostile body modes send it: huge (padding) and/or trickling."""
    s = _state(request).faults.hostile_body(request.url.path)
    if s is None or not (s.huge_body_bytes or s.slow_body_bps):
        return response
    body = bytes(response.body)
    total = s.huge_body_bytes or len(body)
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}

    async def chunks() -> Any:
        sent = 0
        while sent < total:
            if s.slow_body_bps:
                size = 1
                await asyncio.sleep(1.0 / s.slow_body_bps)
            else:
                size = min(_PAD_CHUNK, total - sent)
            piece = body[sent : sent + size].ljust(size)  # padded past the real body
            sent += size
            yield piece

    return StreamingResponse(chunks(), response.status_code, headers, "application/json")


# --- OAuth ---------------------------------------------------------------------------------
def _oauth_error(status: int, error: str, description: str) -> Response:
    body = {
        "error": error,
        "error_description": description,
        "imsx_codeMajor": "failure",
        "imsx_severity": "error",
        "imsx_description": description,
    }
    headers = {"WWW-Authenticate": 'Basic realm="oneroster"'} if status == 401 else None
    return json_response(body, status, headers)


async def token_endpoint(request: Request) -> Response:
    denied = await _guard(request, "token")
    if denied is not None:
        return denied
    sim = _state(request)
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            loaded = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError:
            return _oauth_error(400, "invalid_request", "body is not JSON")
        form = {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
    else:
        form = {k: v[0] for k, v in parse_qs(raw.decode("latin-1")).items()}
    client_id, client_secret = form.get("client_id"), form.get("client_secret")
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(credentials.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return _oauth_error(401, "invalid_client", "malformed Basic credentials")
        client_id, client_secret = unquote_plus(user), unquote_plus(password)
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
    expected = sim.options.clients.get(client_id or "")
    if expected is None or not secrets.compare_digest(expected, client_secret or ""):
        return _oauth_error(401, "invalid_client", "unknown client or wrong secret")
    ttl = sim.options.token_ttl_s
    body: Rec = {
        "access_token": sim.tokens.issue(now=sim.options.clock(), ttl_s=ttl),
        "token_type": "Bearer",
        "expires_in": int(ttl) if float(ttl).is_integer() else ttl,
    }
    if form.get("scope"):
        body["scope"] = form["scope"]
    return json_response(body, headers={"Cache-Control": "no-store"})


# --- reads ---------------------------------------------------------------------------------
def _int_param(request: Request, name: str, default: int, minimum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FilterError(f"{name} must be an integer", value=raw) from None
    if value < minimum:
        raise FilterError(f"{name} must be at least {minimum}", value=raw)
    return value


def _list_handler(collection: str) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        denied = await _guard(request, collection)
        if denied is not None:
            return denied
        sim = _state(request)
        params = request.query_params
        try:
            limit = min(
                _int_param(request, "limit", sim.options.default_limit, 1), sim.options.max_limit
            )
            offset = _int_param(request, "offset", 0, 0)
            endless = sim.faults.hostile_body(request.url.path)
            if endless is not None and endless.endless_pages:
                offset = 0  # the hostile server ignores offset...
            order = (params.get("orderBy") or "asc").lower()
            if order not in ("asc", "desc"):
                raise FilterError("orderBy must be asc or desc", value=order)
            records = sim.listing(
                collection,
                params.get("filter") or None,
                params.get("sort") or None,
                order == "desc",
            )
        except FilterError as exc:
            return imsx(400, str(exc), "invalid_filter_field")
        if collection == "assessmentResults" and sim.faults.results_flapping(
            now=sim.options.clock()
        ):
            sim.stats.fault("flap_results")
            records = []
        if sim.faults.list_drifting(collection, now=sim.options.clock()):
            sim.stats.fault("drift_empty_list")
            records = []
        page = records[offset : offset + limit]
        wanted = params.get("fields")
        if wanted:
            keep = [f.strip() for f in wanted.split(",") if f.strip()]
            page = [{k: r[k] for k in keep if k in r} for r in page]
        body: Rec = {collection: page}
        headers: dict[str, str] = {}
        mode = sim.options.total_mode
        total = len(records)
        if mode == "header":
            headers["X-Total-Count"] = str(total)
        elif mode == "body":
            body |= {"totalCount": total, "offset": offset, "limit": limit}
        elif mode == "link" and offset + limit < total:
            nxt = request.url.include_query_params(offset=offset + limit, limit=limit)
            headers["Link"] = f'<{nxt}>; rel="next"'
        if endless is not None and endless.endless_pages:
            nxt = request.url.include_query_params(offset=offset + limit, limit=limit)
            headers.pop("X-Total-Count", None)
            body.pop("totalCount", None)
            headers["Link"] = f'<{nxt}>; rel="next"'  # ...and always has a next page
        return _hostile(request, json_response(body, headers=headers))

    return handler


def _one_handler(collection: str) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        denied = await _guard(request, collection)
        if denied is not None:
            return denied
        sourced_id = request.path_params["id"]
        sim = _state(request)
        if collection == "courses" and sim.faults.course_drifting(
            sourced_id, now=sim.options.clock()
        ):
            sim.stats.fault("drift_not_found")
            return imsx(404, f"course {sourced_id} not found", "unknownobject")
        record = sim.catalog.get(collection, sourced_id)
        if record is None:
            return imsx(404, f"{SINGULAR[collection]} {sourced_id} not found", "unknownobject")
        return _hostile(request, json_response({SINGULAR[collection]: record}))

    return handler


# --- writes --------------------------------------------------------------------------------
async def _record_body(request: Request, collection: str) -> Rec:
    try:
        body = orjson.loads(await request.body() or b"null")
    except orjson.JSONDecodeError:
        raise InvalidRecord("body is not JSON", collection=collection) from None
    if not isinstance(body, dict):
        raise InvalidRecord("body must be a JSON object", collection=collection)
    inner = body.get(SINGULAR[collection])
    if len(body) == 1 and isinstance(inner, dict):
        return inner
    return body


def _write_handler(collection: str) -> Callable[[Request], Awaitable[Response]]:
    singular = SINGULAR[collection]

    async def handler(request: Request) -> Response:
        denied = await _guard(request, "writes")
        if denied is not None:
            return denied
        catalog = _state(request).catalog
        sourced_id = request.path_params.get("id")
        try:
            if request.method == "DELETE":
                assert sourced_id is not None
                catalog.soft_delete(collection, sourced_id)
                return Response(status_code=204)
            record = await _record_body(request, collection)
            if sourced_id is None:
                stored = catalog.create(collection, record)
                pairs = {
                    "suppliedSourcedId": record.get("sourcedId", stored["sourcedId"]),
                    "allocatedSourcedId": stored["sourcedId"],
                }
                location = f"{COLLECTION_PATH[collection]}/{stored['sourcedId']}"
                return json_response(
                    {"sourcedIdPairs": pairs, singular: stored}, 201, {"Location": location}
                )
            stored, created = catalog.upsert(collection, sourced_id, record)
            return json_response({singular: stored}, 201 if created else 200)
        except RecordNotFound as exc:
            return imsx(404, str(exc), "unknownobject")
        except RecordExists as exc:
            return imsx(409, str(exc), "invalid_data")
        except InvalidRecord as exc:
            return imsx(400, str(exc), "invalid_data")

    return handler


# --- /_sim ---------------------------------------------------------------------------------
async def _sim_body(request: Request) -> Rec:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise HTTPException(400, "body is not JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "body must be a JSON object")
    return body


async def sim_faults(request: Request) -> Response:
    sim = _state(request)
    now = sim.options.clock()
    if request.method == "POST":
        try:
            settings = FaultSettings.model_validate(await _sim_body(request))
        except ValidationError as exc:
            return imsx(400, str(exc), "invalid_data")
        sim.faults.configure(settings, now=now)
    elif request.method == "DELETE":
        sim.faults.clear()
    return json_response(sim.faults.describe(now=now))


async def sim_stats(request: Request) -> Response:
    return json_response(_state(request).stats.snapshot())


async def sim_stats_reset(request: Request) -> Response:
    sim = _state(request)
    sim.stats.reset()
    return json_response(sim.stats.snapshot())


async def sim_summary(request: Request) -> Response:
    return json_response(_state(request).catalog.summary())


async def sim_catalog_reset(request: Request) -> Response:
    """Regenerate the catalog from its config (optionally another ``seed``)."""
    sim = _state(request)
    body = await _sim_body(request)
    config = sim.catalog.config
    if "seed" in body:
        if not isinstance(body["seed"], int):
            return imsx(400, "seed must be an integer", "invalid_data")
        config = replace(config, seed=body["seed"])
    sim.replace_catalog(generate_catalog(config))
    return json_response(sim.catalog.summary()["counts"])


async def sim_options(request: Request) -> Response:
    sim = _state(request)
    if request.method == "POST":
        try:
            update_options(sim.options, await _sim_body(request))
        except ValueError as exc:
            return imsx(400, str(exc), "invalid_data")
    return json_response(options_dict(sim.options))


async def sim_revoke_tokens(request: Request) -> Response:
    return json_response({"revoked": _state(request).tokens.revoke_all()})


async def sim_health(request: Request) -> Response:
    return json_response({"status": "ok", "seed": _state(request).catalog.config.seed})


# --- wiring --------------------------------------------------------------------------------
def _collection_routes(base: str, collection: str) -> list[Route]:
    return [
        Route(base, _list_handler(collection), methods=["GET"]),
        Route(base, _write_handler(collection), methods=["POST"]),
        Route(base + "/{id}", _one_handler(collection), methods=["GET"]),
        Route(base + "/{id}", _write_handler(collection), methods=["PUT", "DELETE"]),
    ]


def _routes() -> list[Route]:
    # Literal component paths come before /courses/{id}, or "components" would be a course id.
    return [
        Route("/oauth/token", token_endpoint, methods=["POST"]),
        *_collection_routes(f"{ROSTERING}/courses/components", "courseComponents"),
        *_collection_routes(f"{ROSTERING}/courses/component-resources", "componentResources"),
        *_collection_routes(f"{ROSTERING}/courses", "courses"),
        *_collection_routes(f"{RESOURCES}/resources", "resources"),
        *_collection_routes(f"{GRADEBOOK}/assessmentResults", "assessmentResults"),
        Route("/_sim/faults", sim_faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sim/stats", sim_stats, methods=["GET"]),
        Route("/_sim/stats/reset", sim_stats_reset, methods=["POST"]),
        Route("/_sim/catalog/summary", sim_summary, methods=["GET"]),
        Route("/_sim/catalog/reset", sim_catalog_reset, methods=["POST"]),
        Route("/_sim/options", sim_options, methods=["GET", "POST"]),
        Route("/_sim/tokens/revoke", sim_revoke_tokens, methods=["POST"]),
        Route("/_sim/health", sim_health, methods=["GET"]),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    minor = {404: "unknownobject", 405: "invalid_selection_field"}.get(status, "invalid_data")
    return imsx(status, str(detail), minor if status < 500 else "internal_server_error")


def create_app(
    catalog: Catalog | None = None, options: SimulatorOptions | None = None, **overrides: Any
) -> Starlette:
    """The simulator app over ``catalog`` (default: the default seeded catalog).

    ``overrides`` set :class:`SimulatorOptions` fields, e.g. ``total_mode="link"``.
    """
    options = options or SimulatorOptions()
    known = {f.name for f in fields(SimulatorOptions)}
    unknown = set(overrides) - known
    if unknown:
        raise TypeError(f"unknown simulator options {sorted(unknown)}")
    for name, value in overrides.items():
        setattr(options, name, value)
    if options.total_mode not in TOTAL_MODES:
        raise ValueError(f"total_mode must be one of {TOTAL_MODES}")
    app = Starlette(
        routes=_routes(),
        exception_handlers={HTTPException: _http_error, Exception: _http_error},
    )
    app.state.sim = SimulatorState(
        catalog=catalog or generate_catalog(CatalogConfig()), options=options
    )
    return app
