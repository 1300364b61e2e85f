"""Shared setup for pipeline benchmarks: a simulator thread plus a real Celery worker process."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.integration.pipeline_harness import (
    REDIS_BROKER_URL,
    Pipeline,
    make_pipeline,
    purge_broker,
)
from worker.simulator.catalog import CatalogConfig, generate_catalog, single_course_config
from worker.simulator.testing import run_simulator_in_thread

BENCH_REDIS_URL = "redis://127.0.0.1:6379/9"


@contextlib.contextmanager
def running_pipeline(
    *,
    resources: int = 500,
    debounce_s: float = 0.25,
    concurrency: int = 2,
    config: CatalogConfig | None = None,
    worker_metrics_port: int = 0,
) -> Iterator[tuple[Any, Pipeline, str]]:
    """Yield (simulator handle, pipeline, course id) with a worker running; clean up after."""
    catalog = generate_catalog(config or single_course_config(resources))
    course_id = catalog.records("courses")[0]["sourcedId"]
    prefix = f"cbbench:{uuid.uuid4().hex[:8]}:"
    log_path = Path(tempfile.mkdtemp(prefix="cb-bench-")) / "worker.log"
    purge_broker(REDIS_BROKER_URL)
    with run_simulator_in_thread(catalog=catalog) as sim:
        pipe = make_pipeline(
            sim_url=sim.base_url,
            key_prefix=prefix,
            broker_url=REDIS_BROKER_URL,
            redis_url=BENCH_REDIS_URL,
            log_path=log_path,
            debounce_s=debounce_s,
            worker_metrics_port=worker_metrics_port,
        )
        pipe.start_worker(concurrency=concurrency)
        try:
            yield sim, pipe, course_id
        finally:
            pipe.stop_workers()
            purge_broker(REDIS_BROKER_URL)
            for key in pipe.redis.scan_iter(match=f"{prefix}*", count=1000):
                pipe.redis.delete(key)


def make_event(kind: str, subject: str, course_id: str | None) -> dict[str, Any]:
    """A valid CloudEvents envelope for the course builder's mutation."""
    data: dict[str, Any] = {} if course_id is None else {"courseId": course_id}
    return {
        "specversion": "1.0",
        "id": f"bench-{uuid.uuid4().hex}",
        "source": "bench",
        "type": f"oneroster.{kind}",
        "subject": subject,
        "data": data,
    }
