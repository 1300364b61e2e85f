"""Test doubles for the OneRoster client: a fake clock and a tiny in-memory OneRoster server."""

from __future__ import annotations

import asyncio
import re
from typing import Any, Literal

import httpx

from core.oneroster.protocol import (
    ASSESSMENT_RESULTS,
    COMPONENT_RESOURCES,
    COMPONENTS,
    COURSES,
    RESOURCE_RECORDS,
)
from core.settings import Settings

BASE = "https://oneroster.test"
TOKEN_URL = f"{BASE}/oauth/token"
SECRET = "s3cr3t-value"

Signal = Literal["header", "link", "body", "none"]


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "oneroster_base_url": BASE,
        "oneroster_client_id": "client-1",
        "oneroster_client_secret": SECRET,
        "oneroster_page_size": 100,
        "oneroster_batch_size": 50,
        "oneroster_max_attempts": 4,
        "oneroster_deadline_s": 10.0,
        "oneroster_backoff_base_s": 0.2,
        "oneroster_backoff_max_s": 5.0,
        "oneroster_timeout_s": 3.0,
    }
    values.update(overrides)
    return Settings(**values)


class FakeClock:
    """A monotonic clock that only moves when slept on (or told to)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds


def token_response(token: str = "tok-1", expires_in: float | None = 3600) -> httpx.Response:
    body: dict[str, Any] = {"access_token": token, "token_type": "Bearer"}
    if expires_in is not None:
        body["expires_in"] = expires_in
    return httpx.Response(200, json=body)


def page_response(
    records: list[dict[str, Any]],
    key: str,
    request: httpx.Request,
    *,
    signal: Signal = "header",
    cap: int | None = None,
) -> httpx.Response:
    """One page of ``records`` as a server with this total signal and ``limit`` cap answers it."""
    asked = int(request.url.params.get("limit", "100"))
    offset = int(request.url.params.get("offset", "0"))
    limit = min(asked, cap) if cap else asked
    page = records[offset : offset + limit]
    body: dict[str, Any] = {key: page}
    headers: dict[str, str] = {}
    if signal == "header":
        headers["X-Total-Count"] = str(len(records))
    elif signal == "link":
        links = [f'<{request.url.copy_set_param("offset", "0")}>; rel="first"']
        if offset + limit < len(records):
            nxt = request.url.copy_set_param("offset", str(offset + limit))
            links.append(f'<{nxt}>; rel="next"')
        headers["Link"] = ", ".join(links)
    elif signal == "body":
        body.update(totalCount=len(records), offset=offset, limit=limit)
    return httpx.Response(200, json=body, headers=headers)


_PRED = re.compile(r"([A-Za-z.]+)(!=|>=|<=|=|>|<|~|@)'([^']*)'")


def _field(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def matches(record: dict[str, Any], expression: str | None) -> bool:
    """Evaluate the subset of filters the client sends (=, !=, >, @; one AND/OR)."""
    if not expression:
        return True
    join = " OR " if " OR " in expression else " AND "
    results = []
    for part in expression.split(join):
        match = _PRED.fullmatch(part)
        assert match, part
        field, op, value = match.groups()
        actual = _field(record, field)
        actual = "" if actual is None else str(actual)
        if op == "=":
            results.append(actual == value)
        elif op == "!=":
            results.append(actual != value)
        elif op == ">":
            results.append(actual > value)
        elif op == "@":
            results.append(actual in value.split(","))
        else:
            raise AssertionError(f"fake does not evaluate {op}")
    return any(results) if join == " OR " else all(results)


class FakeOneRoster:
    """An in-memory OneRoster: token endpoint, filtered/sorted/paged lists, single reads."""

    COLLECTIONS = (COMPONENTS, COMPONENT_RESOURCES, COURSES, RESOURCE_RECORDS, ASSESSMENT_RESULTS)

    def __init__(self, *, signal: Signal = "header", cap: int | None = None) -> None:
        self.signal: Signal = signal
        self.cap = cap
        self.records: dict[str, list[dict[str, Any]]] = {c.path: [] for c in self.COLLECTIONS}
        self.requests: list[httpx.Request] = []
        self.token_requests = 0
        self.token_delay = 0.0

    def add(self, path: str, **record: Any) -> dict[str, Any]:
        record.setdefault("status", "active")
        record.setdefault("dateLastModified", "2024-01-01T00:00:00.000Z")
        record.setdefault("metadata", {})
        self.records[path].append(record)
        return record

    def api_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path != "/oauth/token"]

    def filters(self) -> list[str | None]:
        return [r.url.params.get("filter") for r in self.api_requests()]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/oauth/token":
            self.token_requests += 1
            return token_response(f"tok-{self.token_requests}")
        if not request.headers.get("authorization", "").startswith("Bearer tok-"):
            return httpx.Response(401, json={"imsx_codeMajor": "failure"})
        path = request.url.path
        for collection in self.COLLECTIONS:
            if path == collection.path:
                rows = [
                    r for r in self.records[path] if matches(r, request.url.params.get("filter"))
                ]
                rows.sort(key=lambda r: r["sourcedId"])
                return page_response(
                    rows, collection.list_key, request, signal=self.signal, cap=self.cap
                )
        for collection in self.COLLECTIONS:
            if path.startswith(collection.path + "/"):
                wanted = path.removeprefix(collection.path + "/")
                for record in self.records[collection.path]:
                    if record["sourcedId"] == wanted:
                        return httpx.Response(200, json={collection.item_key: record})
                return httpx.Response(
                    404, json={"imsx_codeMajor": "failure", "imsx_description": "not found"}
                )
        return httpx.Response(404)

    async def handle_async(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token" and self.token_delay:
            await asyncio.sleep(self.token_delay)
        return self(request)
