"""Shared fixtures: fake Redis for unit tests, the real Redis (own DB and prefix) for the rest."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis
import structlog

import core.logging
from core.keys import Keys

# Integration tests use their own Redis DB so they never touch a developer's data.
# CB_TEST_REDIS_PORT moves every real-Redis test (and its broker DBs) to another server.
TEST_REDIS_PORT = int(os.environ.get("CB_TEST_REDIS_PORT", "6379"))
TEST_REDIS_DB = int(os.environ.get("CB_TEST_REDIS_DB", "9"))
TEST_REDIS_URL = os.environ.get(
    "CB_TEST_REDIS_URL", f"redis://127.0.0.1:{TEST_REDIS_PORT}/{TEST_REDIS_DB}"
)
TEST_BROKER_AMQP_URL = os.environ.get("CB_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


_configure_structlog = structlog.configure


def _configure_without_cache(**settings: Any) -> None:
    # A logger cached on first use keeps the processors and level of that moment, which
    # capture_logs cannot reach: in tests every call reads the configuration afresh.
    settings["cache_logger_on_first_use"] = False
    _configure_structlog(**settings)


structlog.configure = _configure_without_cache


@pytest.fixture(autouse=True)
def _logging_as_before() -> Iterator[None]:
    """Undo a test's logging setup (the CLI's sets a level), so later log assertions see all."""
    before = structlog.get_config()
    processors = list(before["processors"])
    configured = core.logging._configured
    yield
    current = structlog.get_config()["processors"]
    current[:] = processors  # in place: bound loggers hold this very list
    structlog.configure(**{**before, "processors": current})
    core.logging._configured = configured


@pytest.fixture
def key_prefix() -> str:
    """A key prefix unique to one test, so tests never see each other's keys."""
    return f"cbtest:{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def keys(key_prefix: str) -> Keys:
    return Keys(prefix=key_prefix)


@pytest.fixture
def fake_redis() -> Iterator[fakeredis.FakeRedis]:
    """An in-memory Redis with Lua scripting; isolated per test."""
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    yield client
    client.close()


@pytest.fixture
def real_redis(key_prefix: str) -> Iterator[redis.Redis]:
    """The machine's Redis on the test DB; every key under this test's prefix is removed after."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    client.ping()
    yield client
    _delete_prefix(client, key_prefix)
    _delete_prefix(client, "assess:*" + key_prefix.rstrip(":"))
    client.close()


def _delete_prefix(client: redis.Redis, prefix: str) -> None:
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)
