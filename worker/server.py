"""The API's HTTP server: uvicorn on h11 with every request bounded (docs/deploy.md).

uvicorn enforces the header size (h11's incomplete-event limit), concurrency and keep-alive;
it has no deadline for a request's headers, nor for a body nobody reads, so the protocol below
adds both. The app bounds the body it reads itself (``worker/api/app.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from core.logging import get_logger
from core.settings import Settings
from worker.api.problems import PROBLEM_MEDIA_TYPE, problem_body

log = get_logger(__name__)

APP = "worker.api.app:create_app"
PROTOCOL = "worker.server:LimitedH11Protocol"
_LINGER_S = 2.0
_HEAD_END = re.compile(rb"\n\r?\n")  # the blank line that ends the headers, as h11 reads it


class ServerConfig(uvicorn.Config):
    """uvicorn's config plus the two deadlines the protocol enforces (picklable for workers)."""

    def __init__(
        self,
        *args: Any,
        max_header_bytes: int,
        header_timeout_s: float,
        body_timeout_s: float,
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self.max_header_bytes = max_header_bytes
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s


def server_config(settings: Settings, *, host: str, port: int, workers: int = 1) -> ServerConfig:
    """The one way the API is served: the Procfile, Dockerfile, compose and ``bundles api``."""
    return ServerConfig(
        APP,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=PROTOCOL,
        h11_max_incomplete_event_size=settings.api_max_header_bytes,
        limit_concurrency=settings.api_max_concurrency,
        timeout_keep_alive=settings.api_keepalive_timeout_s,
        access_log=False,
        max_header_bytes=settings.api_max_header_bytes,
        header_timeout_s=settings.api_header_timeout_s,
        body_timeout_s=settings.api_body_timeout_s,
    )


def run(config: ServerConfig) -> bool:
    """Serve until stopped; False when the server never started (bad app, port taken)."""
    server = uvicorn.Server(config)
    if config.workers > 1:
        from uvicorn.supervisors import Multiprocess  # noqa: PLC0415

        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return True
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return server.started


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header size limit, a header deadline and a deadline for
    an unread body.

    h11's own size limit only applies while the headers are incomplete, so a 20 KiB head sent
    in one packet passes it: the head is measured here before h11 sees it (431, then closed).
    The header clock starts when the connection opens, or at the first byte of the next request
    on a kept-alive one; if the headers have not ended when it runs out, the client gets 408 and
    the connection is closed. A body still arriving after the answer was sent (the app did not
    need it, e.g. a 401) gets the body timeout, then the connection is closed.
    """

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._header_timeout_s = float(getattr(config, "header_timeout_s", 10.0))
        self._body_timeout_s = float(getattr(config, "body_timeout_s", 60.0))
        self._max_head = int(getattr(config, "max_header_bytes", 16 * 1024))
        self._deadline: asyncio.TimerHandle | None = None
        self._head_seen = 0  # bytes of the current request's head received so far
        self._head_tail = b""  # its last bytes, in case the blank line spans two packets
        self._discarding = False  # answered and closing: what still arrives is dropped
        self._waiting_for_head = False  # the deadline armed is the header deadline

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        if self.conn.their_state is h11.IDLE:
            if not self._waiting_for_head:  # the first byte of a request on a kept-alive one
                self._arm_head_deadline()
            if self._head_too_large(data):
                self._reject_head()
                return
        super().data_received(data)
        if self._waiting_for_head and self.conn.their_state is not h11.IDLE:  # head complete
            self._head_seen, self._head_tail = 0, b""
            self._disarm()

    def _head_too_large(self, data: bytes) -> bool:
        chunk = self._head_tail + data
        end = _HEAD_END.search(chunk)
        if end is not None:
            return self._head_seen - len(self._head_tail) + end.end() > self._max_head
        self._head_seen += len(data)
        self._head_tail = chunk[-3:]
        return self._head_seen > self._max_head

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.SEND_BODY:
            self._arm(self._body_timeout_s, self._unread_body_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._arm(self._header_timeout_s, self._headers_late)
        self._waiting_for_head = True

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._waiting_for_head = False

    def _reject_head(self) -> None:
        self._disarm()
        log.info(
            "request headers too large",
            outcome="closed",
            reason="header-too-large",
            limit_bytes=self._max_head,
            client=_peer(self.client),
        )
        detail = f"the request line and headers are larger than {self._max_head} bytes"
        self._answer_and_close(431, "Request Header Fields Too Large", detail, "header-too-large")

    def _answer_and_close(self, status: int, reason: str, detail: str, kind: str) -> None:
        body = problem_body(status, detail, kind=kind, title=reason)
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            f"content-type: {PROBLEM_MEDIA_TYPE}\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        # Closing with unread bytes would reset the connection and could lose the answer:
        # end our side, drop what still comes for a moment, then close (a lingering close).
        self._discarding = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._arm(_LINGER_S, self.transport.close)

    def _headers_late(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        log.info(
            "request headers timed out",
            outcome="closed",
            reason="header-timeout",
            timeout_s=self._header_timeout_s,
            client=_peer(self.client),
        )
        detail = f"the request headers did not arrive within {self._header_timeout_s:g} s"
        self._answer_and_close(408, "Request Timeout", detail, "header-timeout")

    def _unread_body_late(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        log.info(
            "unread request body timed out",
            outcome="closed",
            reason="body-timeout",
            timeout_s=self._body_timeout_s,
            client=_peer(self.client),
        )
        self.transport.close()


def _peer(client: tuple[str, int] | None) -> str | None:
    return f"{client[0]}:{client[1]}" if client else None
