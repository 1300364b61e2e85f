"""The API's HTTP server: uvicorn on httptools with every request bounded (docs/deploy.md).

uvicorn enforces concurrency and keep-alive; on httptools it has no header size limit, no
deadline for a request's headers and none for a body nobody reads, so the protocol below adds
all three. The app bounds the body it reads itself (``worker/api/app.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.logging import get_logger
from core.settings import Settings
from worker.api.problems import PROBLEM_MEDIA_TYPE, problem_body

log = get_logger(__name__)

APP = "worker.api.app:create_app"
PROTOCOL = "worker.server:LimitedHttpToolsProtocol"
_LINGER_S = 2.0
_RECHECK_S = 1.0  # a late head behind a response still being written is looked at again then
# What the parser does not hand over: the request line's two spaces, " HTTP/1.1", its CRLF
# and the blank line; each header's ": " and CRLF.
_LINE_BYTES = len("  HTTP/1.1\r\n\r\n")
_HEADER_BYTES = len(": \r\n")


class ServerConfig(uvicorn.Config):
    """uvicorn's config plus the limits the protocol enforces (picklable for workers)."""

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


def server_config(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int = 1,
    log_level: str | None = None,
    access_log: bool = False,
) -> ServerConfig:
    """The one way the API is served: the Procfile, Dockerfile, compose and ``bundles api``."""
    return ServerConfig(
        APP,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=PROTOCOL,
        limit_concurrency=settings.api_max_concurrency,
        timeout_keep_alive=settings.api_keepalive_timeout_s,
        log_level=log_level,
        access_log=access_log,
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


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a head already answered 431."""


_Base = HttpToolsProtocol


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size limit, a header deadline and a
    deadline for an unread body.

    A head is measured twice: the parser's callbacks count what it parsed (a head that arrives
    whole in one packet), and every packet that ends still inside a head is counted as it
    arrives (a head trickled in pieces, refused before it is complete); past the limit: 431,
    then closed. The header clock starts when the connection opens, or at the first byte of
    the next request on a kept-alive one; one timer per connection is re-armed only when it
    fires, so a request costs no timer. Headers not ended in time: 408, closed. A body still
    arriving after the answer was sent (the app did not need it, e.g. a 401) gets the body
    timeout, then the connection is closed.
    """

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._header_timeout_s = float(getattr(config, "header_timeout_s", 10.0))
        self._body_timeout_s = float(getattr(config, "body_timeout_s", 60.0))
        self._max_head = int(getattr(config, "max_header_bytes", 16 * 1024))
        self._head_open = True  # the parser is between requests or inside a head
        self._head_since: float | None = None  # when the current head's clock started
        self._head_parsed = 0  # bytes of the current head's headers the parser handed over
        self._head_packets = 0  # bytes of packets that were all inside the current head
        self._heads_done = 0
        self._in_body = False  # headers ended, the request's body has not
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._discarding = False  # answered and closing: what still arrives is dropped

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None
        super().connection_lost(exc)

    # uvicorn's data_received, plus the head clock and the count of a head still incomplete.
    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        self._unset_keepalive_if_required()
        inside_head = self._head_open  # this packet starts inside a head (or before one)
        if inside_head and self._head_since is None:
            self._head_since = self.loop.time()
            if self._head_timer is None:
                self._arm_head_timer()
        heads_done = self._heads_done
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._discarding:  # a callback refused the head and answered already
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if inside_head and self._head_open and heads_done == self._heads_done:
            self._head_packets += len(data)
            if self._head_packets > self._max_head and not self._discarding:
                self._reject_head(self._head_packets)

    # The overrides below call the base class directly: they run for every request.
    def on_message_begin(self) -> None:
        _Base.on_message_begin(self)
        if self._head_since is None:  # a request that began inside a packet
            self._start_head_clock()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_parsed += len(name) + len(value) + _HEADER_BYTES
        _Base.on_header(self, name, value)

    def on_headers_complete(self) -> None:
        parsed = self._head_parsed + len(self.parser.get_method()) + len(self.url) + _LINE_BYTES
        size = max(parsed, self._head_packets)
        if size > self._max_head:
            self._reject_head(size)
            raise _HeadRefused
        self._head_open = False
        self._head_since = None
        self._head_parsed = self._head_packets = 0
        self._heads_done += 1
        self._in_body = True
        _Base.on_headers_complete(self)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._head_open = True
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        _Base.on_message_complete(self)

    def on_response_complete(self) -> None:
        _Base.on_response_complete(self)
        if self._in_body and not self.transport.is_closing() and self._body_timer is None:
            self._body_timer = self.loop.call_later(self._body_timeout_s, self._unread_body_late)

    def _start_head_clock(self) -> None:
        self._head_since = self.loop.time()
        if self._head_timer is None:
            self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self._header_timeout_s, self._head_deadline)

    def _head_deadline(self) -> None:
        self._head_timer = None
        if self._head_since is None or self.transport.is_closing():
            return  # no head under way: the next one arms the timer again
        left = self._head_since + self._header_timeout_s - self.loop.time()
        if left <= 0 and self.cycle is not None and not self.cycle.response_complete:
            left = _RECHECK_S  # an answer is being written; ours would corrupt it
        if left > 0:
            self._head_timer = self.loop.call_later(left, self._head_deadline)
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

    def _reject_head(self, size: int) -> None:
        log.info(
            "request headers too large",
            outcome="closed",
            reason="header-too-large",
            limit_bytes=self._max_head,
            seen_bytes=size,
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
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_LINGER_S, self.transport.close)

    def _unread_body_late(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or not self._in_body:
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
