"""Readers in order: interactive requests are admitted oldest first, by when the work they serve
began (a cold read's build), so a build's later requests keep the place of its first.

``queued_since`` is for callers (the API around a build or an attempt resolve); ``admission_age``
is how the gate hands the age of the current admission to the budget it asks.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

_since: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "cb_request_since", default=None
)
_age_ms: contextvars.ContextVar[int] = contextvars.ContextVar("cb_admission_age_ms", default=0)


@contextmanager
def queued_since(at: float | None = None) -> Iterator[None]:
    """OneRoster requests inside this block queue as of ``at`` (``time.monotonic()``, the gate's
    clock; default: now), not as of each request's own start."""
    token = _since.set(time.monotonic() if at is None else at)
    try:
        yield
    finally:
        _since.reset(token)


def current_since() -> float | None:
    """The start set by the innermost :func:`queued_since`, else None (the request's own)."""
    return _since.get()


@contextmanager
def admission_age(age_ms: int) -> Iterator[None]:
    """The budget asked inside this block sees a request that has queued ``age_ms``."""
    token = _age_ms.set(max(0, age_ms))
    try:
        yield
    finally:
        _age_ms.reset(token)


def current_age_ms() -> int:
    """How long the request being admitted has queued (0 outside :func:`admission_age`)."""
    return _age_ms.get()
