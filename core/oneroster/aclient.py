"""Asynchronous OneRoster client (API): drives :mod:`core.oneroster.protocol` ops over
``httpx.AsyncClient``; one token fetch at a time however many coroutines need it."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar, cast

import httpx

from core.budget.classes import RequestClass, current_class
from core.budget.gate import Gate
from core.oneroster.bounded import BodyReader
from core.oneroster.models import (
    AssessmentResult,
    ComponentResource,
    Course,
    CourseComponent,
    Resource,
)
from core.oneroster.protocol import (
    ASSESSMENT_RESULTS,
    COMPONENT_RESOURCES,
    COMPONENTS,
    COURSES,
    RESOURCE_RECORDS,
    Action,
    GetToken,
    OneRosterProtocol,
    Op,
    Send,
    SendResult,
    Sleep,
    throttle_of,
)
from core.settings import Settings, get_settings
from core.singleflight.aio import AsyncSingleFlight

T = TypeVar("T")

FLIGHT_KEY = "token"


class AsyncOneRosterClient:
    """The async twin of ``OneRosterClient``: same methods, as coroutines, on one event loop."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        gate: Gate | None = None,
        request_class: RequestClass = "event",
    ) -> None:
        self.settings = settings or get_settings()
        self.protocol = OneRosterProtocol(self.settings, clock, rng or random.Random())
        self._http = http or httpx.AsyncClient(timeout=self.settings.oneroster_timeout_s)
        self._owns_http = http is None
        self._sleep = sleep
        self.gate = gate  # the fleet's upstream budget (None: unlimited, tests and tools)
        self.request_class = request_class  # when no ``request_class`` block says otherwise
        self._flight: AsyncSingleFlight[str] = AsyncSingleFlight(name="oneroster-token")
        self._counts = threading.Lock()
        self.requests_made = 0
        self.token_fetches = 0

    # -- driving ops --
    async def run(self, op: Op[T]) -> T:
        """Drive a protocol operation to its result, performing each action it yields."""
        answer: object = None
        try:
            while True:
                try:
                    action = op.send(answer)
                except StopIteration as stop:
                    return cast(T, stop.value)
                answer = await self._perform(action)
        finally:
            op.close()

    async def _perform(self, action: Action) -> object:
        if isinstance(action, Send):
            return await self._send(action)
        if isinstance(action, Sleep):
            await self._sleep(action.seconds)
            return None
        if isinstance(action, GetToken):
            return await self._token(action.stale)
        raise TypeError(f"unknown action {action!r}")

    async def _send(self, action: Send) -> SendResult:
        """Send within the fleet's budget: admission first, the lease back with the outcome."""
        if self.gate is None:
            return await self._transmit(action)
        cls = current_class(self.request_class)
        lease = await self.gate.aenter(cls, self._sleep)
        result: SendResult | None = None
        try:
            result = await self._transmit(action)
            return result
        finally:
            outcome, retry_after = throttle_of(result, self.protocol.wall())
            await asyncio.to_thread(self.gate.leave, lease, cls, outcome, retry_after)

    async def _transmit(self, action: Send) -> SendResult:
        """Stream the answer within the byte cap; the whole request (headers and body) gets the
        action's budget, silent or trickling."""
        spec = action.request
        with self._counts:
            if spec.purpose == "token":
                self.token_fetches += 1
            else:
                self.requests_made += 1
        reader = BodyReader(action, self.protocol.clock)
        request = self._http.build_request(
            spec.method,
            spec.url,
            params=list(spec.params),
            headers=list(spec.headers),
            data=dict(spec.data) if spec.data is not None else None,
            timeout=action.timeout,
        )
        try:
            async with asyncio.timeout(action.timeout):
                return await self._read(request, reader)
        except TimeoutError:
            return reader.timed_out(request)
        except httpx.TransportError as exc:
            return exc

    async def _read(self, request: httpx.Request, reader: BodyReader) -> SendResult:
        streamed = await self._http.send(request, stream=True)
        try:
            too_large = reader.check_head(streamed)
            if too_large is not None:
                return too_large
            async for chunk in streamed.aiter_bytes():
                too_large = reader.add(chunk, streamed)
                if too_large is not None:
                    return too_large
            return reader.response(streamed)
        finally:
            await streamed.aclose()

    async def _token(self, stale: str | None) -> str:
        if stale is not None:
            self.protocol.tokens.invalidate(stale)
        token = self.protocol.tokens.current()
        if token is not None:
            return token
        return await self._flight.do(FLIGHT_KEY, self._fetch_token)

    async def _fetch_token(self) -> str:
        token = self.protocol.tokens.current()
        return token if token is not None else await self.run(self.protocol.token())

    # -- reads --
    async def get_course(self, course_id: str) -> Course:
        """One course, whatever its status; 404 raises ``OneRosterNotFound``."""
        return await self.run(self.protocol.get(COURSES, course_id))

    async def list_courses(self, filter: str | None = None) -> list[Course]:
        return await self.run(self.protocol.list_all(COURSES, filter))

    async def list_components(self, filter: str | None = None) -> list[CourseComponent]:
        return await self.run(self.protocol.list_all(COMPONENTS, filter))

    async def list_component_resources(self, filter: str | None = None) -> list[ComponentResource]:
        return await self.run(self.protocol.list_all(COMPONENT_RESOURCES, filter))

    async def list_resources(self, filter: str | None = None) -> list[Resource]:
        return await self.run(self.protocol.list_all(RESOURCE_RECORDS, filter))

    async def list_assessment_results(self, filter: str | None = None) -> list[AssessmentResult]:
        return await self.run(self.protocol.list_all(ASSESSMENT_RESULTS, filter))

    # -- lifecycle --
    async def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncOneRosterClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
