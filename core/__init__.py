"""course-bundles core library: OneRoster client, single-flight, bundles, attempts, events.

Pure logic lives here; processes (Celery, API, CLI) live in ``worker`` and ``tasks``.
"""
