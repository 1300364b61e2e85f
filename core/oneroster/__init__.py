"""OneRoster 1.2 (Timeback extensions) client.

Models, filters, a sans-I/O protocol and two thin shells (sync for Celery, async for the API).
"""
