"""Request classes: who is waiting on a OneRoster request, set per call with a context variable.

``interactive`` a reader or an attempt resolve waits on it; ``event`` a rebuild for a mutation
event (or its confirmation re-read); ``background`` warm and reconcile. A client has a default
class (the API's is interactive, the worker's event); :func:`request_class` overrides it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, Literal

RequestClass = Literal["interactive", "event", "background"]
CLASSES: Final[tuple[RequestClass, ...]] = ("interactive", "event", "background")

_current: contextvars.ContextVar[RequestClass | None] = contextvars.ContextVar(
    "cb_request_class", default=None
)


@contextmanager
def request_class(cls: RequestClass) -> Iterator[None]:
    """OneRoster requests made inside this block (this thread or task) belong to ``cls``."""
    token = _current.set(cls)
    try:
        yield
    finally:
        _current.reset(token)


def current_class(default: RequestClass) -> RequestClass:
    """The class set by the innermost :func:`request_class`, else ``default``."""
    found = _current.get()
    return found if found is not None else default
