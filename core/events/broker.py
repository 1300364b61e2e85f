"""The concrete event sender: Celery task messages on the broker (Redis or RabbitMQ).

Each envelope becomes one ``handle_event`` task message on the ``events`` queue, published
through one pooled producer (one connection per batch). ``depth()`` reads how many messages wait
on that queue (the backlog guard's input). On AMQP the app must set
``broker_transport_options={"confirm_publish": True}`` so a publish returns only once RabbitMQ
has taken the message; ``default_sender`` does. Task messages are persistent (delivery mode 2).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Final

import amqp.exceptions
import celery
import kombu.exceptions
import redis.exceptions
from kombu.utils.url import maybe_sanitize_url

from core.errors import BrokerUnavailable
from core.events.backlog import BacklogGuard
from core.logging import get_logger
from core.settings import Settings

TASK_HANDLE_EVENT: Final = "course_bundles.handle_event"
EVENTS_QUEUE: Final = "events"
TASK_REBUILD: Final = "course_bundles.rebuild"
REBUILDS_QUEUE: Final = "rebuilds"

# Publishing retries briefly so one broker blip does not fail a request, then gives up: the
# producer retries on 503, and the HTTP request must not hang on a dead broker.
PUBLISH_RETRY_POLICY: Final[dict[str, float]] = {
    "max_retries": 2,
    "interval_start": 0.0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CONNECT_TIMEOUT_S: Final = 2.0
SOCKET_TIMEOUT_S: Final = 5.0

_BROKER_ERRORS: Final = (
    kombu.exceptions.KombuError,
    amqp.exceptions.AMQPError,
    redis.exceptions.RedisError,
    OSError,
)
_AMQP_SCHEMES: Final = frozenset({"amqp", "amqps", "pyamqp"})
_REDIS_SCHEMES: Final = frozenset({"redis", "rediss", "redis+socket", "sentinel"})

log = get_logger(__name__)


class CelerySender:
    """Sends envelopes as Celery task messages; raises ``BrokerUnavailable`` if the broker fails."""

    def __init__(
        self,
        app: celery.Celery,
        *,
        task_name: str = TASK_HANDLE_EVENT,
        queue: str = EVENTS_QUEUE,
    ) -> None:
        self._app = app
        self._task_name = task_name
        self._queue = queue

    @property
    def queue(self) -> str:
        return self._queue

    def depth(self) -> int:
        """Messages waiting on the queue: a passive ``queue_declare`` on either broker.

        RabbitMQ answers its ``message_count``; kombu's Redis transport sums the ``LLEN`` of the
        queue's list and its priority sub-lists (``events\x06\x163`` ...). A queue that does
        not exist yet holds nothing.
        """
        try:
            with self._app.pool.acquire(block=True, timeout=CONNECT_TIMEOUT_S) as conn:
                conn.ensure_connection(max_retries=1, timeout=CONNECT_TIMEOUT_S)
                channel = conn.channel()
                try:
                    declared = channel.queue_declare(self._queue, passive=True)
                except conn.channel_errors:
                    return 0  # NOT_FOUND: never declared, or deleted since
                finally:
                    _close_quietly(channel)
                return int(declared.message_count)
        except _BROKER_ERRORS as exc:
            broker = maybe_sanitize_url(str(self._app.conf.broker_url or ""))
            log.warning(
                "events.depth_unavailable", broker=broker, queue=self._queue, error=repr(exc)
            )
            raise BrokerUnavailable(
                "the broker did not say how long its events queue is",
                broker=broker,
                queue=self._queue,
                error=repr(exc),
            ) from exc

    def send(self, envelopes: Sequence[Mapping[str, Any]]) -> None:
        """Put every envelope on the broker through one producer, or raise ``BrokerUnavailable``."""
        if not envelopes:
            return
        sent = 0
        try:
            with self._app.producer_or_acquire() as producer:
                for envelope in envelopes:
                    self._app.send_task(
                        self._task_name,
                        args=[dict(envelope)],
                        queue=self._queue,
                        producer=producer,
                        retry=True,
                        retry_policy=PUBLISH_RETRY_POLICY,
                    )
                    sent += 1
        except _BROKER_ERRORS as exc:
            broker = maybe_sanitize_url(str(self._app.conf.broker_url or ""))
            log.warning(
                "events.broker_unavailable",
                broker=broker,
                queue=self._queue,
                events=len(envelopes),
                sent=sent,
                error=repr(exc),
            )
            raise BrokerUnavailable(
                "the broker did not take the events",
                broker=broker,
                queue=self._queue,
                events=len(envelopes),
                sent_before_failure=sent,
                error=repr(exc),
            ) from exc


def _close_quietly(channel: Any) -> None:
    with contextlib.suppress(*_BROKER_ERRORS):  # a channel closed on NOT_FOUND is gone already
        channel.close()


def broker_transport_options(broker_url: str, *, visibility_timeout_s: int) -> dict[str, Any]:
    """Transport options per broker: publisher confirms on AMQP, visibility timeout on Redis."""
    scheme = broker_url.partition("://")[0].lower()
    if scheme in _AMQP_SCHEMES:
        return {"confirm_publish": True}
    if scheme in _REDIS_SCHEMES:
        return {
            "visibility_timeout": visibility_timeout_s,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            "socket_timeout": SOCKET_TIMEOUT_S,
        }
    return {}


def build_publisher_app(broker_url: str, *, visibility_timeout_s: int) -> celery.Celery:
    """A minimal Celery app that only publishes (JSON messages, short connect timeout)."""
    app = celery.Celery("course_bundles.publisher", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=CONNECT_TIMEOUT_S,
        broker_transport_options=broker_transport_options(
            broker_url, visibility_timeout_s=visibility_timeout_s
        ),
    )
    return app


_senders: dict[tuple[str, int], CelerySender] = {}
_senders_lock = threading.Lock()


def default_sender(settings: Settings) -> CelerySender:
    """The process-wide sender for the configured broker (one app and pool per broker URL)."""
    key = (settings.effective_broker_url, settings.broker_visibility_timeout_s)
    with _senders_lock:
        sender = _senders.get(key)
        if sender is None:
            app = build_publisher_app(key[0], visibility_timeout_s=key[1])
            sender = _senders[key] = CelerySender(app)
        return sender


_backlogs: dict[tuple[str, int, int], BacklogGuard] = {}


def default_backlog(settings: Settings) -> BacklogGuard | None:
    """The process-wide backlog guard of the default sender (None: ``CB_EVENT_BACKLOG_MAX=0``)."""
    if settings.event_backlog_max <= 0:
        return None
    sender = default_sender(settings)
    key = (
        settings.effective_broker_url,
        settings.broker_visibility_timeout_s,
        settings.event_backlog_max,
    )
    with _senders_lock:
        guard = _backlogs.get(key)
        if guard is None:
            guard = _backlogs[key] = BacklogGuard(sender, limit=settings.event_backlog_max)
        return guard
