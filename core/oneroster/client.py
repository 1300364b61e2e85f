"""Synchronous OneRoster client (Celery workers): drives :mod:`core.oneroster.protocol` ops over
``httpx.Client``; one token fetch at a time however many threads need it."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
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
from core.singleflight.local import SingleFlight

T = TypeVar("T")

FLIGHT_KEY = "token"


class OneRosterClient:
    """Thread-safe OneRoster reads: cached token, retries, paging, client-side status filtering."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        gate: Gate | None = None,
        request_class: RequestClass = "event",
    ) -> None:
        self.settings = settings or get_settings()
        self.protocol = OneRosterProtocol(self.settings, clock, rng or random.Random())
        self._http = http or httpx.Client(timeout=self.settings.oneroster_timeout_s)
        self._owns_http = http is None
        self._sleep = sleep
        self.gate = gate  # the fleet's upstream budget (None: unlimited, tests and tools)
        self.request_class = request_class  # when no ``request_class`` block says otherwise
        self._flight: SingleFlight[str] = SingleFlight(name="oneroster-token")
        self._counts = threading.Lock()
        self.requests_made = 0
        self.token_fetches = 0

    # -- driving ops --
    def run(self, op: Op[T]) -> T:
        """Drive a protocol operation to its result, performing each action it yields."""
        answer: object = None
        try:
            while True:
                try:
                    action = op.send(answer)
                except StopIteration as stop:
                    return cast(T, stop.value)
                answer = self._perform(action)
        finally:
            op.close()

    def _perform(self, action: Action) -> object:
        if isinstance(action, Send):
            return self._send(action)
        if isinstance(action, Sleep):
            self._sleep(action.seconds)
            return None
        if isinstance(action, GetToken):
            return self._token(action.stale)
        raise TypeError(f"unknown action {action!r}")

    def _send(self, action: Send) -> SendResult:
        """Send within the fleet's budget: admission first, the lease back with the outcome."""
        if self.gate is None:
            return self._transmit(action)
        cls = current_class(self.request_class)
        lease = self.gate.enter(cls)
        result: SendResult | None = None
        try:
            result = self._transmit(action)
            return result
        finally:
            outcome, retry_after = throttle_of(result, self.protocol.wall())
            self.gate.leave(lease, cls, outcome, retry_after)

    def _transmit(self, action: Send) -> SendResult:
        """Stream the answer: stop at the byte cap, and at the budget between chunks (a silent
        connection is cut by the read timeout, which never exceeds the budget)."""
        spec = action.request
        with self._counts:
            if spec.purpose == "token":
                self.token_fetches += 1
            else:
                self.requests_made += 1
        reader = BodyReader(action, self.protocol.clock)
        try:
            with self._http.stream(
                spec.method,
                spec.url,
                params=list(spec.params),
                headers=list(spec.headers),
                data=dict(spec.data) if spec.data is not None else None,
                timeout=action.timeout,
            ) as streamed:
                too_large = reader.check_head(streamed)
                if too_large is not None:
                    return too_large
                if self.protocol.clock() > reader.ends_at:
                    return reader.timed_out(streamed.request)
                for chunk in streamed.iter_bytes():
                    too_large = reader.add(chunk, streamed)
                    if too_large is not None:
                        return too_large
                return reader.response(streamed)
        except httpx.TransportError as exc:
            return exc

    def _token(self, stale: str | None) -> str:
        if stale is not None:
            self.protocol.tokens.invalidate(stale)
        token = self.protocol.tokens.current()
        if token is not None:
            return token
        return self._flight.do(FLIGHT_KEY, self._fetch_token)

    def _fetch_token(self) -> str:
        # A flight that finished just before this one started may have stored a fresh token.
        token = self.protocol.tokens.current()
        return token if token is not None else self.run(self.protocol.token())

    # -- reads --
    def get_course(self, course_id: str) -> Course:
        """One course, whatever its status; 404 raises ``OneRosterNotFound``."""
        return self.run(self.protocol.get(COURSES, course_id))

    def list_courses(self, filter: str | None = None) -> list[Course]:
        return self.run(self.protocol.list_all(COURSES, filter))

    def list_components(self, filter: str | None = None) -> list[CourseComponent]:
        return self.run(self.protocol.list_all(COMPONENTS, filter))

    def list_component_resources(self, filter: str | None = None) -> list[ComponentResource]:
        return self.run(self.protocol.list_all(COMPONENT_RESOURCES, filter))

    def list_resources(self, filter: str | None = None) -> list[Resource]:
        return self.run(self.protocol.list_all(RESOURCE_RECORDS, filter))

    def list_assessment_results(self, filter: str | None = None) -> list[AssessmentResult]:
        return self.run(self.protocol.list_all(ASSESSMENT_RESULTS, filter))

    # -- lifecycle --
    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> OneRosterClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
