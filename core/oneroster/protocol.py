"""Sans-I/O core of the OneRoster client: everything except sending bytes and sleeping.

Operations are generators (:data:`Op`) that yield :class:`Send`, :class:`Sleep` and
:class:`GetToken` actions and receive their results; :mod:`core.oneroster.client` (threads) and
:mod:`core.oneroster.aclient` (asyncio) each drive them, so retries, the 401 refresh, paging and
the course fetch are written once. Time comes from an injected clock.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import enum
import math
import random
import re
import threading
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, cast

import httpx
import orjson
from pydantic import ValidationError

from core.errors import (
    OneRosterAuthError,
    OneRosterHTTPError,
    OneRosterNotFound,
    OneRosterProtocolError,
    OneRosterThrottled,
    OneRosterUnavailable,
)
from core.logging import get_logger
from core.oneroster.filters import check_value, validate_filter
from core.oneroster.models import (
    AssessmentResult,
    ComponentResource,
    Course,
    CourseComponent,
    Record,
    Resource,
    TokenResponse,
)
from core.redaction import redact, register_secret
from core.settings import Settings

log = get_logger("core.oneroster")

T = TypeVar("T")
R = TypeVar("R", bound=Record)

ROSTERING = "/ims/oneroster/rostering/v1p2"
RESOURCES = "/ims/oneroster/resources/v1p2"
GRADEBOOK = "/ims/oneroster/gradebook/v1p2"


# --- endpoints -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Collection(Generic[R]):
    """A OneRoster collection: its path, its list and single-record keys, its record model."""

    path: str
    list_key: str
    item_key: str
    model: type[R]


COURSES = Collection(f"{ROSTERING}/courses", "courses", "course", Course)
COMPONENTS = Collection(
    f"{ROSTERING}/courses/components", "courseComponents", "courseComponent", CourseComponent
)
COMPONENT_RESOURCES = Collection(
    f"{ROSTERING}/courses/component-resources",
    "componentResources",
    "componentResource",
    ComponentResource,
)
RESOURCE_RECORDS = Collection(f"{RESOURCES}/resources", "resources", "resource", Resource)
ASSESSMENT_RESULTS = Collection(
    f"{GRADEBOOK}/assessmentResults", "assessmentResults", "assessmentResult", AssessmentResult
)


# --- actions ---------------------------------------------------------------------------------
Params = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One HTTP request to make; ``purpose`` separates API calls from token fetches.

    Headers and form data stay out of ``repr``: they carry the bearer token and client secret.
    """

    method: str
    url: str
    params: Params = ()
    headers: Params = field(default=(), repr=False)
    data: Params | None = field(default=None, repr=False)
    purpose: Literal["api", "token"] = "api"

    @property
    def path(self) -> str:
        """The URL path, safe to log (no query, no credentials)."""
        return httpx.URL(self.url).path

    def with_bearer(self, token: str) -> RequestSpec:
        """This request carrying ``Authorization: Bearer token``."""
        headers = tuple(h for h in self.headers if h[0].lower() != "authorization")
        return RequestSpec(
            self.method,
            self.url,
            self.params,
            (*headers, ("Authorization", f"Bearer {token}")),
            self.data,
            self.purpose,
        )


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``request``; answered with an ``httpx.Response`` (body read), the
    ``httpx.TransportError`` it raised, or :class:`Oversize`.

    ``timeout`` bounds the whole request, headers and body download together (a body that
    trickles in is given up when it runs out); a body past ``max_bytes`` is not read further.
    """

    request: RequestSpec
    timeout: float
    max_bytes: int = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Oversize:
    """The answer to a :class:`Send` whose body was (or declared itself) over ``limit`` bytes."""

    status: int
    limit: int
    received: int
    declared: bool = False


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds``; answered with ``None``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class GetToken:
    """A valid bearer token (single-flight per process); ``stale`` was just refused with 401."""

    stale: str | None = None


Action = Send | Sleep | GetToken
Op = Generator[Action, object, T]


SendResult = httpx.Response | httpx.TransportError | Oversize


def send(request: RequestSpec, timeout: float, max_bytes: int) -> Op[SendResult]:
    """Yield one :class:`Send` and return its typed answer."""
    result = yield Send(request, timeout, max_bytes)
    if not isinstance(result, httpx.Response | httpx.TransportError | Oversize):
        raise TypeError(f"Send answered with {type(result).__name__}")
    return result


def get_token(stale: str | None = None) -> Op[str]:
    """Yield one :class:`GetToken` and return the token."""
    result = yield GetToken(stale)
    if not isinstance(result, str):
        raise TypeError(f"GetToken answered with {type(result).__name__}")
    return result


def counting(op: Op[T]) -> Op[tuple[T, int]]:
    """Run ``op`` and also return how many API requests (retries included) it sent."""
    sent = 0
    answer: object = None
    while True:
        try:
            action = op.send(answer)
        except StopIteration as stop:
            return cast(T, stop.value), sent
        if isinstance(action, Send) and action.request.purpose == "api":
            sent += 1
        answer = yield action


# --- retries ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and by a total deadline."""

    max_attempts: int = 5
    deadline_s: float = 30.0
    base_s: float = 0.2
    max_s: float = 5.0
    timeout_s: float = 10.0
    # A Retry-After longer than this is not slept through: OneRosterThrottled says when to
    # come back (a worker's rebuild waits in the schedule, not in a sleeping worker).
    max_pause_s: float = math.inf

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        budget = settings.oneroster_budget_enabled
        return cls(
            max_attempts=max(1, settings.oneroster_max_attempts),
            deadline_s=settings.oneroster_deadline_s,
            base_s=settings.oneroster_backoff_base_s,
            max_s=settings.oneroster_backoff_max_s,
            timeout_s=settings.oneroster_timeout_s,
            max_pause_s=settings.oneroster_budget_max_wait_s if budget else math.inf,
        )

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter after failed attempt ``attempt`` (1-based): uniform in [0, cap]."""
        cap = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        return rng.uniform(0.0, cap)

    def next_delay(
        self, attempt: int, elapsed: float, retry_after: float | None, rng: random.Random
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to give up (attempts or deadline)."""
        if attempt >= self.max_attempts:
            return None
        delay = retry_after if retry_after is not None else self.backoff(attempt, rng)
        if elapsed + delay >= self.deadline_s:
            return None
        return delay

    def timeout(self, elapsed: float) -> float:
        """The timeout of the next attempt: never past the deadline."""
        return max(0.001, min(self.timeout_s, self.deadline_s - elapsed))


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """``Retry-After`` as seconds from ``now`` (delta-seconds or HTTP-date); None if absent/bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def throttle_of(
    result: object, now: dt.datetime
) -> tuple[Literal["ok", "throttled", "failed"], float | None]:
    """How one answer counts for the fleet's budget: a ``429``, or a ``503`` with
    ``Retry-After``, is a throttle (with its Retry-After); any other answer below 500 is ok."""
    if not isinstance(result, httpx.Response):
        return "failed", None
    status = result.status_code
    retry_after = parse_retry_after(result.headers.get("retry-after"), now)
    if status == 429 or (status == 503 and retry_after is not None):
        return "throttled", retry_after
    return ("failed", None) if status >= 500 else ("ok", None)


# --- errors ----------------------------------------------------------------------------------
class Outcome(enum.Enum):
    """What a status code means for the caller."""

    OK = "ok"
    RETRY = "retry"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    FAIL = "fail"


def classify(status: int) -> Outcome:
    """2xx ok; 401 auth; 404 not found; 429/5xx retryable; every other status fails."""
    if 200 <= status < 300:
        return Outcome.OK
    if status == 401:
        return Outcome.AUTH
    if status == 404:
        return Outcome.NOT_FOUND
    if status == 429 or status >= 500:
        return Outcome.RETRY
    return Outcome.FAIL


@dataclass(frozen=True, slots=True)
class ImsxStatus:
    """The parts of an ``imsx_StatusInfo`` error body we could find (all optional)."""

    code_major: str | None = None
    code_minor: tuple[str, ...] = ()
    description: str | None = None

    def context(self) -> dict[str, Any]:
        """Non-empty fields, for error context."""
        found: dict[str, Any] = {
            "code_major": self.code_major,
            "code_minor": ",".join(self.code_minor) or None,
            "description": self.description,
        }
        return {k: v for k, v in found.items() if v}


_MAX_TEXT = 300
_FALLBACK_KEYS = ("error_description", "message", "detail", "error", "description")


def parse_imsx(body: bytes) -> ImsxStatus:
    """Leniently read an error body: imsx fields at any nesting (JSON or XML), else plain text."""
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return ImsxStatus()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _imsx_from_text(text)
    found: dict[str, list[str]] = {}
    _walk(data, None, found)
    major = _first(found, "imsx_codemajor")
    description = _first(found, "imsx_description", *_FALLBACK_KEYS)
    if description is None and isinstance(data, str):
        description = data
    return ImsxStatus(
        code_major=_clip(major),
        code_minor=tuple(_clip(m) or "" for m in found.get("imsx_codeminor", [])),
        description=_clip(description),
    )


def _first(found: dict[str, list[str]], *keys: str) -> str | None:
    return next((found[k][0] for k in keys if found.get(k)), None)


def _walk(node: object, key: str | None, found: dict[str, list[str]], minor: bool = False) -> None:
    """Collect string leaves by lower-cased key; under ``imsx_CodeMinor`` keep only the code
    values (``imsx_codeMinorFieldValue``), not their field names."""
    if isinstance(node, Mapping):
        for raw_key, value in node.items():
            name = str(raw_key).lower()
            _walk(value, name, found, minor or name == "imsx_codeminor")
    elif isinstance(node, list):
        for item in node:
            _walk(item, key, found, minor)
    elif isinstance(node, str | int | float) and not isinstance(node, bool) and key is not None:
        if not minor:
            found.setdefault(key, []).append(str(node))
        elif key == "imsx_codeminor" or key.endswith("value"):
            found.setdefault("imsx_codeminor", []).append(str(node))


_XML_TAG = r"<(?:\w+:)?{name}[^>]*>([^<]*)<"


def _imsx_from_text(text: str) -> ImsxStatus:
    def tag(name: str) -> list[str]:
        return [m.strip() for m in re.findall(_XML_TAG.format(name=name), text, re.I) if m.strip()]

    major, description = tag("imsx_codeMajor"), tag("imsx_description")
    if major or description:
        minor = tuple(tag("imsx_codeMinorFieldValue")) or tuple(tag("imsx_CodeMinor"))
        return ImsxStatus(
            code_major=_clip(major[0]) if major else None,
            code_minor=tuple(_clip(m) or "" for m in minor),
            description=_clip(description[0]) if description else None,
        )
    return ImsxStatus(description=_clip(text))


def _clip(text: str | None) -> str | None:
    """Upstream text fit to quote: secrets masked (before cutting, so none is half-kept), short."""
    if text is None:
        return None
    text = redact(text)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def error_for(response: httpx.Response, spec: RequestSpec) -> OneRosterHTTPError:
    """The error to raise for a final non-2xx API answer."""
    status = response.status_code
    context = {"path": spec.path, **parse_imsx(response.content).context()}
    if status == 404:
        return OneRosterNotFound("OneRoster record not found", status=status, **context)
    return OneRosterHTTPError(f"OneRoster answered {status}", status=status, **context)


# --- tokens ----------------------------------------------------------------------------------
REFRESH_MARGIN_S = 60.0


def refresh_margin(lifetime: float) -> float:
    """Refresh this long before expiry: 60 s, or a tenth of the lifetime when that is shorter."""
    return min(REFRESH_MARGIN_S, max(0.0, lifetime) / 10)


def fresh_until(obtained_at: float, lifetime: float) -> float:
    """Clock reading after which a token obtained at ``obtained_at`` must be refreshed."""
    return obtained_at + max(0.0, lifetime) - refresh_margin(lifetime)


_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def token_problem(token: str, max_chars: int) -> str | None:
    """Why ``token`` cannot go into an ``Authorization: Bearer`` header, or None when it can:
    it must be an RFC 7235 token68 of at most ``max_chars`` characters."""
    if not token:
        return "empty"
    if len(token) > max_chars:
        return f"longer than {max_chars} characters"
    if _TOKEN68.fullmatch(token) is None:
        return "not a token68 value"
    return None


def token_lifetime(expires_in: float, floor_s: float) -> float:
    """The lifetime to cache a token for: ``expires_in``, but never below ``floor_s``.

    A server answering ``expires_in: 0`` (or less) would otherwise cost a token fetch per call;
    if the token really is dead sooner, the 401 path fetches a new one.
    """
    if math.isnan(expires_in):
        return floor_s
    return max(floor_s, expires_in)


class TokenCache:
    """The current bearer token and when it goes stale, by an injected monotonic clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._fresh_until = 0.0

    def current(self) -> str | None:
        """The cached token while fresh, else None."""
        with self._lock:
            if self._token is not None and self._clock() < self._fresh_until:
                return self._token
            return None

    def store(self, token: str, obtained_at: float, lifetime: float) -> None:
        with self._lock:
            self._token = token
            self._fresh_until = fresh_until(obtained_at, lifetime)

    def invalidate(self, stale: str) -> None:
        """Forget ``stale`` (refused with 401) unless another caller already replaced it."""
        with self._lock:
            if self._token == stale:
                self._token = None


# --- pages -----------------------------------------------------------------------------------
def read_json(response: httpx.Response, spec: RequestSpec) -> Any:
    """The decoded JSON body, or :class:`OneRosterProtocolError`."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise OneRosterProtocolError(
            "OneRoster answered a body that is not JSON",
            path=spec.path,
            status=response.status_code,
        ) from exc


def page_records(body: Any, list_key: str, spec: RequestSpec) -> list[Any]:
    """The raw records of one collection page (``{list_key: [...]}``)."""
    if not isinstance(body, Mapping):
        raise OneRosterProtocolError("collection body is not an object", path=spec.path)
    records = body.get(list_key)
    if records is None:
        if any(isinstance(v, list) for v in body.values()):
            raise OneRosterProtocolError(
                "collection key missing",
                path=spec.path,
                expected=list_key,
                keys=[_clip(str(k)) for k in sorted(body)[:10]],
            )
        return []
    if not isinstance(records, list):
        raise OneRosterProtocolError("collection key is not a list", path=spec.path, key=list_key)
    return records


def parse_record(model: type[R], raw: Any, spec: RequestSpec) -> R | None:
    """A typed record; None for a malformed record that is deleted anyway."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        status = raw.get("status") if isinstance(raw, Mapping) else None
        if isinstance(status, str) and status.lower() in ("tobedeleted", "inactive"):
            return None
        sourced_id = raw.get("sourcedId") if isinstance(raw, Mapping) else None
        raise OneRosterProtocolError(
            f"malformed {model.__name__} record",
            path=spec.path,
            sourced_id=_clip(str(sourced_id)) if sourced_id is not None else None,
            errors=exc.error_count(),
        ) from exc


_LINK = re.compile(r"<[^>]*>([^<]*)")
_REL = re.compile(r'\brel\s*=\s*(?:"([^"]*)"|([^\s;,"]+))', re.I)


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def link_rels(headers: httpx.Headers) -> set[str] | None:
    """The ``rel`` names of every ``Link`` header, or None when there is no Link header."""
    values = headers.get_list("link")
    if not values:
        return None
    rels: set[str] = set()
    for link in _LINK.finditer(",".join(values)):
        for quoted, bare in _REL.findall(link.group(1)):
            rels.update((quoted or bare).lower().split())
    return rels


@dataclass
class PageCursor:
    """Offset paging that stops on whichever total signal the server sends.

    Order of trust: a total (``X-Total-Count`` or body ``totalCount``), then ``Link`` headers
    (no ``rel="next"`` means last page), then a short page measured against the body ``limit``
    or the ``limit`` asked. The offset always moves by the records received, so a server that
    caps ``limit`` below what was asked is paged correctly.

    A hostile or broken server cannot page forever: :meth:`admit` refuses a page past
    ``max_pages`` or ``max_records``, and a page that brings no ``sourcedId`` not seen before
    (offset ignored, the same page again and again).
    """

    limit: int
    offset: int = 0
    done: bool = False
    max_pages: int = 500
    max_records: int = 50_000
    pages: int = 0
    records: int = 0
    seen: set[str] = field(default_factory=set, repr=False)

    def params(self) -> Params:
        return (("limit", str(self.limit)), ("offset", str(self.offset)))

    def admit(self, raw: list[Any], *, path: str) -> None:
        """Count one page of raw records; :class:`OneRosterProtocolError` when a cap is passed or
        the page brings nothing new."""
        self.pages += 1
        self.records += len(raw)
        if self.pages > self.max_pages:
            raise OneRosterProtocolError(
                "OneRoster list has more pages than allowed",
                path=path,
                max_pages=self.max_pages,
                records=self.records,
            )
        if self.records > self.max_records:
            raise OneRosterProtocolError(
                "OneRoster list has more records than allowed",
                path=path,
                max_records=self.max_records,
                pages=self.pages,
            )
        ids = {r.get("sourcedId") for r in raw if isinstance(r, Mapping)}
        named = {i for i in ids if isinstance(i, str)}
        fresh = named - self.seen
        if named and not fresh:
            raise OneRosterProtocolError(
                "OneRoster page brought no new records (offset ignored?)",
                path=path,
                page=self.pages,
                offset=self.offset,
            )
        self.seen |= fresh

    def advance(self, received: int, *, headers: httpx.Headers, body: object) -> None:
        """Account for a page of ``received`` raw records (deleted ones included)."""
        if received == 0:
            self.done = True
            return
        self.offset += received
        fields = body if isinstance(body, Mapping) else {}
        total = _as_int(headers.get("x-total-count"))
        if total is None:
            total = _as_int(fields.get("totalCount"))
        if total is not None:
            self.done = self.offset >= total
            return
        rels = link_rels(headers)
        if rels is not None:
            self.done = "next" not in rels
            return
        served = _as_int(fields.get("limit"))
        full = min(self.limit, served) if served else self.limit
        self.done = received < full


# --- the protocol ----------------------------------------------------------------------------
def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class OneRosterProtocol:
    """Builds every OneRoster operation; shared by the sync and async shells."""

    settings: Settings
    clock: Callable[[], float]
    rng: random.Random
    wall: Callable[[], dt.datetime] = _utc_now
    policy: RetryPolicy = field(init=False)
    tokens: TokenCache = field(init=False)

    def __post_init__(self) -> None:
        self.policy = RetryPolicy.from_settings(self.settings)
        self.tokens = TokenCache(self.clock)
        register_secret(self.settings.oneroster_client_secret.get_secret_value())

    def url(self, path: str) -> str:
        return self.settings.oneroster_base_url.rstrip("/") + path

    # -- single requests --
    def attempts(self, spec: RequestSpec) -> Op[httpx.Response]:
        """Send ``spec`` until it is answered with a non-retryable status, or give up."""
        policy, start, attempt = self.policy, self.clock(), 0
        while True:
            attempt += 1
            limit = self.settings.oneroster_max_response_bytes
            result = yield from send(spec, policy.timeout(self.clock() - start), limit)
            if isinstance(result, Oversize):
                log.warning(
                    "oneroster.response_too_large",
                    path=spec.path,
                    status=result.status,
                    limit=result.limit,
                    received=result.received,
                    declared=result.declared,
                )
                raise OneRosterProtocolError(
                    "OneRoster answer is larger than allowed",
                    path=spec.path,
                    status=result.status,
                    max_bytes=result.limit,
                )
            if isinstance(result, httpx.Response):
                if classify(result.status_code) is not Outcome.RETRY:
                    return result
                retry_after = parse_retry_after(result.headers.get("retry-after"), self.wall())
                reason = str(result.status_code)
            else:
                retry_after, reason = None, type(result).__name__
            elapsed = self.clock() - start
            if retry_after is not None and retry_after > policy.max_pause_s:
                log.warning(
                    "oneroster.throttled",
                    path=spec.path,
                    attempts=attempt,
                    reason=reason,
                    retry_after=retry_after,
                )
                raise OneRosterThrottled(
                    "OneRoster asked to wait longer than the admission wait",
                    retry_after_s=retry_after,
                    path=spec.path,
                    attempts=attempt,
                    last=reason,
                )
            delay = policy.next_delay(attempt, elapsed, retry_after, self.rng)
            if delay is None:
                log.warning(
                    "oneroster.gave_up",
                    path=spec.path,
                    attempts=attempt,
                    reason=reason,
                    duration_ms=round(elapsed * 1000),
                )
                raise OneRosterUnavailable(
                    "OneRoster unavailable", path=spec.path, attempts=attempt, last=reason
                )
            log.info(
                "oneroster.retry",
                path=spec.path,
                attempt=attempt,
                reason=reason,
                delay_ms=round(delay * 1000),
                retry_after=retry_after,
            )
            yield Sleep(delay)

    def request(self, spec: RequestSpec) -> Op[httpx.Response]:
        """One authorized API request; a 401 fetches a new token once and retries once."""
        token = yield from get_token()
        refreshed = False
        while True:
            response = yield from self.attempts(spec.with_bearer(token))
            outcome = classify(response.status_code)
            if outcome is Outcome.OK:
                return response
            if outcome is Outcome.AUTH:
                if refreshed:
                    raise OneRosterAuthError(
                        "OneRoster refused a fresh token",
                        path=spec.path,
                        status=401,
                        **parse_imsx(response.content).context(),
                    )
                log.info("oneroster.token_refused", path=spec.path)
                refreshed = True
                token = yield from get_token(stale=token)
                continue
            raise error_for(response, spec)

    def token(self) -> Op[str]:
        """Fetch a client-credentials token, cache it, return it (callers single-flight this)."""
        s = self.settings
        form = [
            ("grant_type", "client_credentials"),
            ("client_id", s.oneroster_client_id),
            ("client_secret", s.oneroster_client_secret.get_secret_value()),
        ]
        if s.oneroster_scope:
            form.append(("scope", s.oneroster_scope))
        spec = RequestSpec(
            "POST",
            s.effective_token_url,
            headers=(("Accept", "application/json"),),
            data=tuple(form),
            purpose="token",
        )
        started = self.clock()
        response = yield from self.attempts(spec)
        if classify(response.status_code) is not Outcome.OK:
            raise OneRosterAuthError(
                "OneRoster token endpoint refused the client credentials",
                status=response.status_code,
                client_id=s.oneroster_client_id,
                **parse_imsx(response.content).context(),
            )
        try:
            answer = TokenResponse.model_validate(read_json(response, spec))
        except (ValidationError, OneRosterProtocolError):
            # Not chained: the validation error would quote the body, token included.
            raise OneRosterAuthError(
                "OneRoster token endpoint answered without an access_token",
                status=response.status_code,
            ) from None
        problem = token_problem(answer.access_token, s.oneroster_max_token_chars)
        if problem is not None:
            raise OneRosterAuthError(
                "OneRoster token endpoint answered an unusable access_token",
                status=response.status_code,
                problem=problem,
            )
        register_secret(answer.access_token, rotating=True)
        lifetime = token_lifetime(answer.expires_in, s.oneroster_token_min_lifetime_s)
        self.tokens.store(answer.access_token, started, lifetime)
        log.info(
            "oneroster.token_fetched",
            expires_in=answer.expires_in,
            lifetime_s=lifetime,
            duration_ms=round((self.clock() - started) * 1000),
        )
        return answer.access_token

    # -- records --
    def get(self, collection: Collection[R], sourced_id: str) -> Op[R]:
        """One record by id, whatever its status; 404 raises :class:`OneRosterNotFound`."""
        check_value(sourced_id, field="sourcedId")
        if not sourced_id.strip("."):
            # "." and ".." are path segments, not ids: URL normalisation would read a list.
            raise OneRosterNotFound(
                "no record has a dot-only id", status=404, collection=collection.path
            )
        spec = RequestSpec("GET", self.url(f"{collection.path}/{sourced_id}"))
        response = yield from self.request(spec)
        body = read_json(response, spec)
        raw = body.get(collection.item_key, body) if isinstance(body, Mapping) else body
        record = parse_record(collection.model, raw, spec)
        if record is None:
            raise OneRosterProtocolError("malformed deleted record", path=spec.path)
        return record

    def list_all(
        self,
        collection: Collection[R],
        filter: str | None = None,
        *,
        page_size: int | None = None,
        include_inactive: bool = False,
    ) -> Op[list[R]]:
        """Every record of a collection (all pages, ``sort=sourcedId``), deleted ones dropped."""
        if filter is not None:
            validate_filter(filter)
        s = self.settings
        cursor = PageCursor(
            limit=page_size or s.oneroster_page_size,
            max_pages=s.oneroster_max_pages,
            max_records=s.oneroster_max_records,
        )
        records: list[R] = []
        while not cursor.done:
            spec = self._list_spec(collection, filter, cursor.params())
            response = yield from self.request(spec)
            body = read_json(response, spec)
            raw = page_records(body, collection.list_key, spec)
            cursor.admit(raw, path=spec.path)
            cursor.advance(len(raw), headers=response.headers, body=body)
            for item in raw:
                record = parse_record(collection.model, item, spec)
                if record is not None and (include_inactive or record.is_active):
                    records.append(record)
        return records

    def any_record(self, collection: Collection[R], filter: str) -> Op[bool]:
        """Whether the filter matches at least one record of any status (one request, limit 1)."""
        validate_filter(filter)
        spec = self._list_spec(collection, filter, (("limit", "1"), ("offset", "0")))
        response = yield from self.request(spec)
        return bool(page_records(read_json(response, spec), collection.list_key, spec))

    def _list_spec(
        self, collection: Collection[R], filter: str | None, paging: Params
    ) -> RequestSpec:
        params: Params = (*paging, ("sort", "sourcedId"))
        if filter is not None:
            params = (*params, ("filter", filter))
        return RequestSpec(
            "GET", self.url(collection.path), params, headers=(("Accept", "application/json"),)
        )
