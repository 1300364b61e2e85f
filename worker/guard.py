"""The worker's message guard: a broker message is a call of our task, or a dead letter.

Celery builds a ``Request`` from a message trusting its shape; a message that is not a
protocol-2 JSON call raised inside the consumer and stopped the worker, and late acks gave it to
the next one. Installed by worker/celery_app.py:

- ``GuardedTask.Strategy`` runs ``core.events.message_guard.check_message`` before Celery's own
  strategy turns the message into a request;
- ``GuardedConsumer`` makes Celery's paths for messages it cannot route (unknown task, not a task
  message, undecodable, invalid) dead-letter and acknowledge instead of logging and rejecting, and
  catches whatever else a message raises in the consumer.

Every refused message is dead-lettered (source ``broker``), counted, logged and acknowledged.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

from celery import Task
from celery.worker.consumer.consumer import Consumer
from celery.worker.strategy import default
from kombu.exceptions import ContentDisallowed
from kombu.message import Message
from vine import promise

from core.events.message_guard import RejectCode, Rejection, TaskMessage, check_message
from core.logging import get_logger
from worker import metrics
from worker.runtime import get_runtime

log = get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)  # kombu's ack_log_error wants a stdlib logger

MAX_CONTEXT_CHARS = 2000
MAX_LOGGED_BODY_CHARS = 1000

Handler = Callable[..., Any]


class GuardedTask(Task):  # type: ignore[misc]  # Celery's Task is untyped
    """Our task base class: its strategy checks every message before Celery reads it."""

    Strategy = "worker.guard:guarded_strategy"


def guarded_strategy(task: Task, app: Any, consumer: Consumer, **kwargs: Any) -> Handler:
    """Celery's default strategy behind ``check_message``: refused messages never reach it."""
    handler = default(task, app, consumer, **kwargs)
    tasks = {task.name: _signature(task)}
    max_bytes = get_runtime().settings.broker_message_max_bytes
    connection_errors = consumer.connection_errors

    def task_message_handler(
        message: Message, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any
    ) -> Any:
        raw = TaskMessage(
            headers=message.headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            body=message.body,
        )
        rejection = check_message(raw, tasks, max_bytes=max_bytes)
        if rejection is not None:
            refuse(message, rejection, connection_errors=connection_errors)
            return None
        return handler(message, body, ack, reject, callbacks, **kw)

    return task_message_handler


class GuardedConsumer(Consumer):  # type: ignore[misc]  # Celery's Consumer is untyped
    """Celery's consumer, but no message is only rejected or makes it exit: it is dead-lettered."""

    def create_task_handler(self, promise: Any = promise) -> Handler:
        handler: Handler = super().create_task_handler(promise)
        connection_errors = self.connection_errors

        def on_task_received(message: Message) -> Any:
            try:
                return handler(message)
            except connection_errors:
                raise  # the connection, not the message: Celery reconnects
            except Exception as exc:  # noqa: BLE001 - whatever a message raises is its verdict
                if message.acknowledged:
                    log.error("broker_message_failed_after_ack", error=repr(exc)[:300])
                    return None
                detail = f"the worker failed on this message: {exc!r}"
                refuse(
                    message, Rejection("unexpected", detail), connection_errors=connection_errors
                )
                return None

        return on_task_received

    def on_unknown_message(self, body: Any, message: Message) -> None:
        detail = "not a Celery task message: no 'task' header and no protocol-1 body"
        refuse(message, Rejection("not_a_task", detail), connection_errors=self.connection_errors)

    def on_unknown_task(self, body: Any, message: Message, exc: BaseException) -> None:
        headers = message.headers if isinstance(message.headers, Mapping) else {}
        name = headers.get("task")
        if name is None and isinstance(body, Mapping):
            name = body.get("task")
        detail = f"no task named {str(name)[:200]!r} is registered on this worker"
        refuse(message, Rejection("unknown_task", detail), connection_errors=self.connection_errors)

    def on_invalid_task(self, body: Any, message: Message, exc: BaseException) -> None:
        code: RejectCode = "content_type" if isinstance(exc, ContentDisallowed) else "headers"
        detail = f"Celery refused the message: {exc}"
        refuse(message, Rejection(code, detail), connection_errors=self.connection_errors)

    def on_decode_error(self, message: Message, exc: BaseException) -> None:
        code: RejectCode = "content_type" if isinstance(exc, ContentDisallowed) else "undecodable"
        detail = f"the body cannot be decoded: {exc}"
        refuse(message, Rejection(code, detail), connection_errors=self.connection_errors)


def refuse(message: Message, rejection: Rejection, *, connection_errors: tuple[Any, ...]) -> None:
    """Dead-letter the message with the reason, count and log it, and acknowledge it.

    If the dead-letter store cannot take it (Redis down) the message is still acknowledged: it can
    never succeed, and holding it would stall the queue; the log line then carries its body.
    """
    headers = message.headers if isinstance(message.headers, Mapping) else {}
    context = _context(message, headers, rejection)
    outcome = "dead_lettered"
    try:
        get_runtime().dlq.add(
            reason=f"not a valid task message ({rejection.code}): {rejection.detail}",
            payload=_payload(message.body),
            source="broker",
            context=context,
        )
        metrics.DEAD_LETTERS.labels("broker").inc()
    except Exception as exc:  # noqa: BLE001 - the store failed; the verdict stands
        outcome = "dropped"
        log.error(
            "broker_message_not_dead_lettered",
            reason=rejection.code,
            error=repr(exc)[:300],
            body=repr(message.body)[:MAX_LOGGED_BODY_CHARS],
        )
    metrics.BROKER_REJECTED.labels(rejection.code).inc()
    log.warning(
        "broker_message_rejected",
        outcome=outcome,
        reason=rejection.code,
        detail=rejection.detail[:300],
        task=context["task"],
        message_id=context["message_id"],
        routing_key=context["routing_key"],
    )
    if not message.acknowledged:
        message.ack_log_error(_stdlib_log, connection_errors)  # type: ignore[no-untyped-call]


def _signature(task: Task) -> inspect.Signature:
    """The call signature of the task's body (``self`` excluded for bound tasks)."""
    try:
        return inspect.signature(task.run)
    except (TypeError, ValueError):
        anything = [
            inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
            inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
        ]
        return inspect.Signature(anything)


def _payload(body: object) -> bytes | str:
    if isinstance(body, bytes | str):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    return repr(body)


def _context(message: Message, headers: Mapping[Any, Any], rejection: Rejection) -> dict[str, Any]:
    delivery = message.delivery_info if isinstance(message.delivery_info, Mapping) else {}
    return {
        "reason_code": rejection.code,
        "task": _text(headers.get("task")),
        "message_id": _text(headers.get("id")),
        "content_type": _text(message.content_type),
        "content_encoding": _text(message.content_encoding),
        "exchange": _text(delivery.get("exchange")),
        "routing_key": _text(delivery.get("routing_key")),
        "headers": repr(dict(headers))[:MAX_CONTEXT_CHARS] if headers else None,
    }


def _text(value: object) -> str | None:
    if value is None:
        return None
    return (value if isinstance(value, str) else repr(value))[:200]
