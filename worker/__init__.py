"""Processes of course-bundles: Celery app, API, CLI, simulator."""
