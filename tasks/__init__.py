"""Celery tasks: thin wrappers that call core."""
