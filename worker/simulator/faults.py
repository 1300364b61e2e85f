"""Fault injection for the simulator: latency, shares of 5xx/429 answers, a real rate limit (a
token bucket answering 429 with Retry-After), outages, flapping results, a hostile upstream
(endless pages, huge or trickling bodies, errors echoing credentials), and drift (lists answering
``200`` empty, courses answering ``404``) for publish safety.

Set through ``POST /_sim/faults`` (the whole configuration is replaced), read with ``GET`` and
cleared with ``DELETE``. Time is passed in, so decisions are a pure function of settings, the
seeded random stream and the clock.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class FaultSettings(BaseModel):
    """What to inject; every field defaults to "no fault"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float = Field(default=0.0, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)  # uniform extra 0..jitter_ms
    error_rate: float = Field(default=0.0, ge=0, le=1)  # share of 5xx answers
    error_status: int = Field(default=503, ge=500, le=599)
    throttle_rate: float = Field(default=0.0, ge=0, le=1)  # share of 429 answers
    retry_after_s: int = Field(default=1, ge=0)  # Retry-After on 429 (and outage 503s)
    fail_next: int = Field(default=0, ge=0)  # the next N requests answer error_status
    throttle_next: int = Field(default=0, ge=0)  # the next N requests answer 429
    outage: bool = False  # every request answers 503
    outage_s: float | None = Field(default=None, gt=0)  # an outage for this long, then none
    flap_results_s: float = Field(default=0.0, ge=0)  # assessmentResults lists empty this long
    flap_results_requests: int = Field(default=0, ge=0)  # ...or for the next N list requests
    # A real rate limit (issue 19): a token bucket of rate_limit_rps requests a second holding
    # rate_limit_burst; past it 429 with Retry-After = whole seconds until a token (at least 1).
    rate_limit_rps: float = Field(default=0.0, ge=0)  # 0: no rate limit
    rate_limit_burst: float = Field(default=1.0, ge=1)
    include_token: bool = True  # whether /oauth/token is subject to the faults above
    path_prefixes: list[str] = Field(default_factory=list)  # only these paths (empty: all)
    seed: int | None = None  # seeds the random shares (None: a fixed default stream)
    # A hostile upstream (tests/faults/test_hostile_upstream.py); path_prefixes apply too.
    endless_pages: bool = False  # lists ignore offset and always link a next page
    huge_body_bytes: int = Field(default=0, ge=0)  # reads answer this many bytes (chunked)
    slow_body_bps: float = Field(default=0.0, ge=0)  # reads trickle out this many bytes a second
    echo_request: bool = False  # 400 (token: 401) whose description quotes the credentials sent
    # Drift (tests/faults/test_upstream_drift.py): wrong answers with a 200 or a 404, no error.
    drift_empty_lists: list[str] = Field(default_factory=list)  # these collections list empty
    drift_missing_courses: list[str] = Field(default_factory=list)  # GET /courses/{id}: 404
    drift_s: float | None = Field(default=None, gt=0)  # the drift lasts this long (None: until
    # the faults are cleared or replaced)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do to one request: wait ``delay_s``, then answer ``status`` (None: serve it)."""

    delay_s: float = 0.0
    status: int | None = None
    retry_after_s: int | None = None
    reason: str = ""


NO_FAULT = Decision()


class FaultInjector:
    """Holds the active :class:`FaultSettings` and their consumable counters; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.settings = FaultSettings()
        self._rng = random.Random(0)
        self._fail_left = 0
        self._throttle_left = 0
        self._outage_until: float | None = None
        self._flap_until = 0.0
        self._flap_left = 0
        self._bucket = 0.0
        self._bucket_at = 0.0
        self._drift_until: float | None = None

    def configure(self, settings: FaultSettings, *, now: float) -> None:
        """Replace the whole configuration (counters and timers restart from ``now``)."""
        if settings.outage_s and not settings.outage:
            settings = settings.model_copy(update={"outage": True})
        with self._lock:
            self.settings = settings
            self._rng = random.Random(settings.seed if settings.seed is not None else 0)
            self._fail_left = settings.fail_next
            self._throttle_left = settings.throttle_next
            self._outage_until = now + settings.outage_s if settings.outage_s else None
            self._flap_until = now + settings.flap_results_s
            self._flap_left = settings.flap_results_requests
            self._bucket, self._bucket_at = settings.rate_limit_burst, now
            self._drift_until = now + settings.drift_s if settings.drift_s else None

    def clear(self) -> None:
        """Back to no faults at all."""
        self.configure(FaultSettings(), now=0.0)

    def describe(self, *, now: float) -> dict[str, Any]:
        """Settings plus what is left of counters and timers (for ``GET /_sim/faults``)."""
        with self._lock:
            outage = self._outage_active(now)
            return {
                **self.settings.model_dump(),
                "remaining": {
                    "failNext": self._fail_left,
                    "throttleNext": self._throttle_left,
                    "outageActive": outage,
                    "outageS": max(0.0, self._outage_until - now)
                    if outage and self._outage_until
                    else None,
                    "flapResultsS": max(0.0, self._flap_until - now),
                    "flapResultsRequests": self._flap_left,
                    "driftS": None
                    if self._drift_until is None
                    else max(0.0, self._drift_until - now),
                },
            }

    def decide(self, path: str, *, now: float, is_token: bool = False) -> Decision:
        """The fault (if any) for one API request to ``path``."""
        with self._lock:
            s = self.settings
            if is_token and not s.include_token:
                return NO_FAULT
            if s.path_prefixes and not any(path.startswith(p) for p in s.path_prefixes):
                return NO_FAULT
            delay = s.latency_ms / 1000.0
            if s.jitter_ms:
                delay += self._rng.uniform(0.0, s.jitter_ms) / 1000.0
            if s.echo_request:
                return Decision(delay, 401 if is_token else 400, None, "echo")
            if self._outage_active(now):
                return Decision(delay, 503, s.retry_after_s, "outage")
            if self._fail_left > 0:
                self._fail_left -= 1
                return Decision(delay, s.error_status, None, "fail_next")
            if self._throttle_left > 0:
                self._throttle_left -= 1
                return Decision(delay, 429, s.retry_after_s, "throttle_next")
            if s.rate_limit_rps and not self._take_token(now):
                wait_s = (1 - self._bucket) / s.rate_limit_rps
                return Decision(delay, 429, max(1, math.ceil(wait_s)), "rate_limit")
            if s.error_rate and self._rng.random() < s.error_rate:
                return Decision(delay, s.error_status, None, "error_rate")
            if s.throttle_rate and self._rng.random() < s.throttle_rate:
                return Decision(delay, 429, s.retry_after_s, "throttle_rate")
            return Decision(delay) if delay else NO_FAULT

    def _take_token(self, now: float) -> bool:
        """Refill the rate-limit bucket to ``now`` and take one token if there is one."""
        s = self.settings
        elapsed = max(0.0, now - self._bucket_at)
        self._bucket = min(s.rate_limit_burst, self._bucket + elapsed * s.rate_limit_rps)
        self._bucket_at = max(self._bucket_at, now)
        if self._bucket >= 1:
            self._bucket -= 1
            return True
        return False

    def hostile_body(self, path: str) -> FaultSettings | None:
        """The settings when a read of ``path`` must be answered with a hostile body, else None."""
        with self._lock:
            s = self.settings
            if not (s.endless_pages or s.huge_body_bytes or s.slow_body_bps):
                return None
            if s.path_prefixes and not any(path.startswith(p) for p in s.path_prefixes):
                return None
            return s

    def results_flapping(self, *, now: float) -> bool:
        """Whether this ``assessmentResults`` list request must answer empty (consumes a count)."""
        with self._lock:
            if now < self._flap_until:
                return True
            if self._flap_left > 0:
                self._flap_left -= 1
                return True
            return False

    def list_drifting(self, collection: str, *, now: float) -> bool:
        """Whether a list of ``collection`` must answer ``200`` with no records now."""
        with self._lock:
            return collection in self.settings.drift_empty_lists and self._drifting(now)

    def course_drifting(self, course_id: str, *, now: float) -> bool:
        """Whether ``GET /courses/{course_id}`` must answer ``404`` now."""
        with self._lock:
            return course_id in self.settings.drift_missing_courses and self._drifting(now)

    def _drifting(self, now: float) -> bool:
        return self._drift_until is None or now < self._drift_until

    def _outage_active(self, now: float) -> bool:
        if not self.settings.outage:
            return False
        if self._outage_until is not None and now >= self._outage_until:
            self.settings = self.settings.model_copy(update={"outage": False})
            self._outage_until = None
            return False
        return True
