"""The Celery app's guard wiring and pool-process recycling come from Settings."""

from __future__ import annotations

from celery.utils.imports import symbol_by_name

from core.settings import Settings
from worker.celery_app import celery_config, create_app
from worker.guard import GuardedConsumer, GuardedTask


def test_pool_processes_are_recycled_past_512_mib_by_default_and_0_turns_it_off() -> None:
    assert celery_config(Settings(_env_file=None))["worker_max_memory_per_child"] == 512 * 1024
    off = Settings(_env_file=None, worker_max_memory_per_child_kb=0)
    assert celery_config(off)["worker_max_memory_per_child"] is None


def test_every_task_and_the_consumer_of_the_app_go_through_the_guard() -> None:
    app = create_app(Settings(_env_file=None))
    app.loader.import_default_modules()
    assert app.tasks["course_bundles.handle_event"].Strategy == "worker.guard:guarded_strategy"
    assert all(isinstance(task, GuardedTask) for task in app.tasks.values())
    assert symbol_by_name(app.conf.worker_consumer) is GuardedConsumer
