"""The Celery application: queues, reliability settings and the beat schedule (docs/celery.md)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any

import redis
from celery import Celery, bootsteps
from celery.signals import setup_logging, worker_init, worker_process_shutdown, worker_shutdown
from kombu.entity import Exchange, Queue

from core.events import broker as core_broker
from core.events.broker import EVENTS_QUEUE, TASK_HANDLE_EVENT
from core.logging import configure_logging, get_logger
from core.settings import Settings, get_settings

log = get_logger(__name__)


def _prepare_worker_metrics() -> str | None:
    """Turn on Prometheus multiprocess mode in a worker (its metrics live in pool processes).

    Runs before worker.metrics creates any metric (tasks are imported later); Celery's CLI loads
    Flower's plugin, which imports prometheus_client early, so its value class is re-derived.
    """
    if "worker" not in sys.argv[1:] or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    path = tempfile.mkdtemp(prefix="cb-worker-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    from prometheus_client import values  # noqa: PLC0415

    values.ValueClass = values.get_value_class()
    return path


_OWN_METRICS_DIR = _prepare_worker_metrics()

REBUILDS_QUEUE = core_broker.REBUILDS_QUEUE
TASK_REBUILD = core_broker.TASK_REBUILD
TASK_RECONCILE = "course_bundles.reconcile"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Every Celery setting we choose, derived from our one settings object."""
    broker = settings.effective_broker_url
    is_amqp = broker.startswith(("amqp://", "amqps://", "pyamqp://"))
    transport: dict[str, Any] = {}
    if is_amqp:
        transport["confirm_publish"] = True
    else:
        transport.update(
            visibility_timeout=settings.broker_visibility_timeout_s,
            health_check_interval=25,
            socket_timeout=10,
            socket_connect_timeout=5,
            socket_keepalive=True,
            retry_on_timeout=True,
        )
    return {
        "broker_url": broker,
        "broker_transport_options": transport,
        "broker_connection_retry": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_heartbeat": 30 if is_amqp else 0,
        "broker_pool_limit": 10,
        # Results are never read: events and rebuilds report through Redis state and logs.
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        # At-least-once: ack after the task body, and redeliver if the worker process dies.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        # Every message is checked before Celery reads it; what is not a call of our task is
        # dead-lettered and acknowledged instead of stopping the worker (worker/guard.py).
        "worker_consumer": "worker.guard:GuardedConsumer",
        "worker_max_memory_per_child": settings.worker_max_memory_per_child_kb or None,
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "task_time_limit": settings.task_time_limit_s,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # Flower needs task events.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_queues": (
            Queue(EVENTS_QUEUE, Exchange(EVENTS_QUEUE), routing_key=EVENTS_QUEUE),
            Queue(REBUILDS_QUEUE, Exchange(REBUILDS_QUEUE), routing_key=REBUILDS_QUEUE),
        ),
        "task_default_queue": EVENTS_QUEUE,
        "task_routes": {
            TASK_HANDLE_EVENT: {"queue": EVENTS_QUEUE},
            TASK_REBUILD: {"queue": REBUILDS_QUEUE},
            TASK_RECONCILE: {"queue": REBUILDS_QUEUE},
        },
        "beat_schedule": {
            "reconcile": {"task": TASK_RECONCILE, "schedule": settings.reconcile_period_s},
        },
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "timezone": "UTC",
    }


def create_app(settings: Settings | None = None) -> Celery:
    """A configured Celery app with our tasks registered."""
    settings = settings or get_settings()
    celery_app = Celery(
        "course_bundles",
        include=["tasks.events", "tasks.rebuild"],
        task_cls="worker.guard:GuardedTask",
    )
    celery_app.conf.update(celery_config(settings))
    return celery_app


class ScheduleStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Runs this worker's schedule loop (worker/scheduler.py) in its main process."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.loop: Any = None

    def start(self, parent: Any) -> None:
        from core.keys import Keys  # noqa: PLC0415 - the worker process only
        from core.pipeline.schedule import Schedule  # noqa: PLC0415
        from worker.scheduler import ScheduleLoop  # noqa: PLC0415

        settings = get_settings()
        schedule = Schedule(
            redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5),
            Keys(prefix=settings.key_prefix),
            shards=settings.schedule_shards,
            claim_lease_ms=settings.schedule_claim_lease_ms,
        )
        celery_app = parent.app

        def send(entry: Any) -> None:
            celery_app.send_task(
                entry.task, args=entry.args, kwargs=entry.kwargs, queue=entry.queue
            )

        self.loop = ScheduleLoop(
            schedule, send, tick_s=settings.schedule_tick_s, limit=settings.schedule_claim_limit
        )
        self.loop.start()

    def stop(self, parent: Any) -> None:
        if self.loop is not None:
            self.loop.stop()


app = create_app()
app.steps["worker"].add(ScheduleStep)


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    """Our structlog setup (JSON, redaction, CB_LOG_LEVEL) instead of Celery's own."""
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)


@worker_init.connect
def _serve_worker_metrics(**_: Any) -> None:
    """Serve every pool process's metrics from the worker's main process."""
    settings = get_settings()
    if not settings.worker_metrics_port:
        return
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server  # noqa: PLC0415

    from worker.scheduler import STATS  # noqa: PLC0415 - the main process's own numbers

    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    registry.register(STATS)
    try:
        start_http_server(
            settings.worker_metrics_port, addr=settings.worker_metrics_host, registry=registry
        )
    except OSError as exc:
        log.warning("worker_metrics_unavailable", port=settings.worker_metrics_port, error=str(exc))
        return
    log.info("worker_metrics_serving", port=settings.worker_metrics_port)


@worker_process_shutdown.connect
def _forget_dead_pool_process(pid: int | None = None, **_: Any) -> None:
    if pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess  # noqa: PLC0415

        multiprocess.mark_process_dead(pid)


@worker_shutdown.connect
def _remove_own_metrics_dir(**_: Any) -> None:
    if _OWN_METRICS_DIR:
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)
