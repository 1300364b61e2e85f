"""A hostile OneRoster for the client's tests: endless pages, huge and trickling bodies, echoes.

Each maker returns an httpx handler (for ``MockTransport``, sync or async client alike) and
``run_list`` drives either client over it, on the fake clock.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from core.oneroster.aclient import AsyncOneRosterClient
from core.oneroster.client import OneRosterClient
from core.oneroster.models import Course
from tests.core.oneroster.fakes import FakeClock, make_settings, token_response

Kind = Literal["sync", "async"]
KINDS: tuple[Kind, ...] = ("sync", "async")
Handler = Callable[[httpx.Request], httpx.Response]


def course(sourced_id: str) -> dict[str, Any]:
    return {"sourcedId": sourced_id, "status": "active", "title": sourced_id}


@dataclass
class Stream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body of ``total`` bytes in ``chunk``-sized pieces, made as it is read; ``sent`` counts
    what was handed out. ``tick`` advances the fake clock per chunk (a trickling body)."""

    total: int
    chunk: int
    clock: FakeClock | None = None
    tick: float = 0.0
    prefix: bytes = b""
    sent: int = 0

    def _pieces(self) -> Iterator[bytes]:
        data = self.prefix
        while self.sent < self.total:
            if not data:
                data = b" " * self.chunk
            piece, data = data[: self.chunk], data[self.chunk :]
            piece = piece[: self.total - self.sent]
            self.sent += len(piece)
            if self.clock is not None:
                self.clock.advance(self.tick)
            yield piece

    def __iter__(self) -> Iterator[bytes]:
        yield from self._pieces()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self._pieces():
            yield piece


@dataclass
class Upstream:
    """Answers tokens and one list endpoint through ``page``; records what was asked."""

    page: Callable[[httpx.Request, int], httpx.Response]
    token: Callable[[httpx.Request], httpx.Response] = field(
        default=lambda _r: token_response("tok-abcdef-123456")
    )
    requests: list[httpx.Request] = field(default_factory=list)
    token_requests: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/oauth/token":
            self.token_requests += 1
            return self.token(request)
        return self.page(request, len(self.api_requests()))

    def api_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path != "/oauth/token"]


def run_list(
    kind: Kind, handler: Handler, clock: FakeClock, *, times: int = 1, **overrides: Any
) -> list[Course]:
    """``list_courses()`` ``times`` times on one client of ``kind`` (one token cache) whose
    transport is ``handler``; the last answer."""
    settings = make_settings(**overrides)
    found: list[Course] = []
    if kind == "sync":
        with OneRosterClient(
            settings,
            http=httpx.Client(transport=httpx.MockTransport(handler)),
            clock=clock,
            sleep=clock.sleep,
            rng=random.Random(7),
        ) as client:
            for _ in range(times):
                found = client.list_courses()
        return found

    async def go() -> list[Course]:
        found: list[Course] = []
        async with AsyncOneRosterClient(
            settings,
            http=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
            clock=clock,
            sleep=clock.asleep,
            rng=random.Random(7),
        ) as client:
            for _ in range(times):
                found = await client.list_courses()
        return found

    return asyncio.run(go())
