"""Reading one answer within bounds, shared by both shells: a byte cap and a time budget.

The shells stream the body chunk by chunk into a :class:`BodyReader`; it stops at the byte cap
and at the request's budget (headers and body together), so neither a huge body nor one that
trickles in a byte a second can hold a worker.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from core.oneroster.protocol import Oversize, Send

# Describe the bytes as they are now (decoded), not as they came over the wire.
_WIRE_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


class BudgetExceeded(httpx.ReadTimeout):
    """The answer did not arrive completely within the request's time budget."""


def declared_length(headers: httpx.Headers) -> int | None:
    """``Content-Length`` as an integer, or None when absent or not a number."""
    value = headers.get("content-length", "").strip()
    return int(value) if value.isdigit() else None


class BodyReader:
    """Collects one answer's body for :class:`Send` ``action``; refuses past its bounds."""

    def __init__(self, action: Send, clock: Callable[[], float]) -> None:
        self.action = action
        self._clock = clock
        self.ends_at = clock() + action.timeout
        self._chunks: list[bytes] = []
        self.received = 0

    def check_head(self, response: httpx.Response) -> Oversize | None:
        """An :class:`Oversize` when the headers already declare too many bytes."""
        declared = declared_length(response.headers)
        if declared is not None and declared > self.action.max_bytes:
            return Oversize(response.status_code, self.action.max_bytes, declared, declared=True)
        return None

    def remaining(self) -> float:
        """Seconds left of the request's budget (at least a millisecond)."""
        return max(0.001, self.ends_at - self._clock())

    def add(self, chunk: bytes, response: httpx.Response) -> Oversize | None:
        """Take one chunk; an :class:`Oversize` past the cap, :class:`BudgetExceeded` past the
        budget."""
        self.received += len(chunk)
        if self.received > self.action.max_bytes:
            return Oversize(response.status_code, self.action.max_bytes, self.received)
        self._chunks.append(chunk)
        if self._clock() > self.ends_at:
            raise self.timed_out(response.request)
        return None

    def timed_out(self, request: httpx.Request) -> BudgetExceeded:
        return BudgetExceeded(
            f"answer not complete within {self.action.timeout:.3g}s", request=request
        )

    def response(self, streamed: httpx.Response) -> httpx.Response:
        """A complete response with the body read so far (decoded)."""
        headers = [
            (k, v) for k, v in streamed.headers.multi_items() if k.lower() not in _WIRE_HEADERS
        ]
        return httpx.Response(
            streamed.status_code,
            headers=headers,
            content=b"".join(self._chunks),
            request=streamed.request,
        )
